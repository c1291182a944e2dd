"""The live page of a stream: comments, reactions and viewers, driven by @chorus/client."""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from realtime.extensions import page_config_providers
from realtime.selectors import stream_get

# Comments the page reads when it joins at the tail (and whose reactions it is given up front).
PAGE_TAIL = 50


@ensure_csrf_cookie
def stream_page(request: HttpRequest, slug: str) -> HttpResponse:
    stream = stream_get(slug=slug)
    if stream is None:
        raise Http404(f"No stream '{slug}'")
    user = request.user if request.user.is_authenticated else None
    config = {
        "stream": stream.slug,
        "user": user.get_username() if user else None,
        "kinds": list(settings.CHORUS_REACTION_KINDS),
        "tail": PAGE_TAIL,
    }
    for name, provider in page_config_providers.items():  # e.g. "reactions" (reactions/apps.py)
        config[name] = provider(stream_id=stream.id, user_id=user.pk if user else None, limit=PAGE_TAIL)
    return render(request, "streams/stream.html", {"stream": stream, "config": config})
