"""Celery queues: the task queue (dead-lettering to the DLQ on RabbitMQ) and the dead-letter queue.

On RabbitMQ the task queue carries ``x-dead-letter-exchange``: a message the worker rejects
without requeueing is routed to the dead-letter queue by the broker itself. Redis has no such
feature, so there the worker publishes the failed message to the same dead-letter queue itself
(``delivery.reliable``). Either way ``delivery.worker`` consumes that queue and records it.

Plain kombu objects and no Django imports, so the Celery settings can build the queues too.
"""

from kombu import Exchange, Queue


def dead_letter_exchange(task_queue: str) -> Exchange:
    return Exchange(f"{task_queue}.dlx", type="direct", durable=True)


def dead_letter_queue(task_queue: str) -> Queue:
    name = f"{task_queue}.dead_letter"
    return Queue(name, exchange=dead_letter_exchange(task_queue), routing_key=name, durable=True)


def task_queues(task_queue: str) -> list[Queue]:
    dlq = dead_letter_queue(task_queue)
    return [
        Queue(
            task_queue,
            exchange=Exchange(task_queue, type="direct", durable=True),
            routing_key=task_queue,
            durable=True,
            queue_arguments={
                "x-dead-letter-exchange": dlq.exchange.name,
                "x-dead-letter-routing-key": dlq.routing_key,
            },
        )
    ]
