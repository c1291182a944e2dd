from django.apps import AppConfig


class NaiveConfig(AppConfig):
    name = "bench.naive"
    label = "bench_naive"

    def ready(self) -> None:
        from bench.naive.views import naive_frame_handle
        from realtime.extensions import register_inbound_handler

        register_inbound_handler("naive_reaction", naive_frame_handle)
