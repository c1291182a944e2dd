"""Chorus project package: settings, URLs, the ASGI application and the Celery app."""

from project.celery import app as celery_app

__all__ = ("celery_app",)
