"""factory_boy factories for the models tests create directly."""

import factory
from django.contrib.auth import get_user_model

from realtime.models import Stream


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")


class StreamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Stream
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"stream-{n}")
    title = factory.LazyAttribute(lambda o: f"Stream {o.slug}")
