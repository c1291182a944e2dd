from django.apps import AppConfig


class ReactionsConfig(AppConfig):
    name = "reactions"

    def ready(self) -> None:
        from reactions.emitter import CountsEmitter
        from reactions.frames import SNAPSHOT_KIND
        from reactions.hot import HotStreams
        from reactions.selectors import stream_latest_comment_reactions
        from reactions.ws import reaction_counts_snapshot, reaction_frame_handle
        from realtime.extensions import register_inbound_handler, register_page_config, register_snapshot_provider
        from realtime.node import node

        register_inbound_handler("reaction", reaction_frame_handle)
        register_snapshot_provider(SNAPSHOT_KIND, reaction_counts_snapshot)
        register_page_config("reactions", stream_latest_comment_reactions)  # the live page's up-front reactions
        node.add(HotStreams())  # this process's view of which streams are hot
        node.add(CountsEmitter())  # coalesced counts of hot streams, run by every node
