"""factory_boy factories for the models tests create directly.

Call ``UserFactory.create(...)``: the type checker knows it returns a ``User`` (``UserFactory()``
does the same at run time, but is typed as the factory).
"""

import functools

import factory
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from realtime.models import Stream

# PBKDF2 takes about half a second a password: each distinct password is hashed once per run (its
# users share the salt, which is harmless here), so a test's users cost milliseconds.
_hashed_once = functools.cache(make_password)


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests", transform=_hashed_once)


class StreamFactory(factory.django.DjangoModelFactory[Stream]):
    class Meta:
        model = Stream
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"stream-{n}")
    title = factory.LazyAttribute(lambda o: f"Stream {o.slug}")
