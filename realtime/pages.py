"""The demo page: a live comment column for one stream."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from realtime.selectors import stream_get


@ensure_csrf_cookie
def stream_page(request: HttpRequest, slug: str) -> HttpResponse:
    stream = stream_get(slug=slug)
    if stream is None:
        raise Http404(f"No stream '{slug}'")
    return render(request, "streams/stream.html", {"stream": stream})
