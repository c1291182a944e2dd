"""The signed-in user of an API request that only signed-in users can reach."""

from rest_framework import exceptions
from rest_framework.request import Request


def authenticated_user_id(request: Request) -> int:
    """The id of the request's user, in a view whose permission already refused anonymous callers
    (``IsAuthenticated``, or ``IsAuthenticatedOrReadOnly`` on a write). Should a view lose that
    permission, the anonymous caller gets the 401 the permission would have given."""
    user = request.user
    if not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user.pk
