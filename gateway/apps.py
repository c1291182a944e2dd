from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway (rate limits, internal API, overload)"

    def ready(self) -> None:
        from gateway import checks  # noqa: F401  (registers the deployment checks)
        from gateway.overload import SheddingSignals
        from gateway.services import ws_frame_admit
        from realtime.extensions import register_frame_admission
        from realtime.node import node

        register_frame_admission(ws_frame_admit)
        node.add(SheddingSignals())  # the load-shedding signals' refresh thread, run by every node
