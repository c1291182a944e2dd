from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Streams and real-time delivery"

    def ready(self) -> None:
        from project.process_tuning import HeapFreezer
        from realtime.node import node

        node.add(HeapFreezer.from_settings())  # keeps the node's sockets out of full collections
