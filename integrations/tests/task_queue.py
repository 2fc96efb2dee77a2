"""Read and run django-q2's queued tasks in the test process, on either broker.

Tests run on the ORM broker by default, and on the Redis broker when REDIS_URL is set (the
scale-out run of .ci/run). Both keep the queue in the order tasks were enqueued.
"""

import importlib

from django.conf import settings


def _uses_redis():
    return "redis" in settings.Q_CLUSTER


def queued_tasks():
    """Return the queued task dicts ("func", "args", "kwargs", ...), oldest first."""
    if _uses_redis():
        from django_q.brokers import get_broker
        from django_q.signing import SignedPackage

        broker = get_broker()
        return [SignedPackage.loads(payload)
                for payload in broker.connection.lrange(broker.list_key, 0, -1)]
    from django_q.models import OrmQ

    return [package.task for package in OrmQ.objects.order_by("id")]


def queued_lead_ids():
    """Return the lead ids of every queued task, bulk tasks flattened."""
    lead_ids = []
    for task in queued_tasks():
        argument = task["args"][0]
        lead_ids += argument if isinstance(argument, list) else [argument]
    return lead_ids


def _take_queued_tasks():
    """Remove every queued task from the queue and return them, oldest first."""
    if _uses_redis():
        tasks = queued_tasks()
        from django_q.brokers import get_broker

        broker = get_broker()
        broker.connection.ltrim(broker.list_key, len(tasks), -1)
        return tasks
    from django_q.models import OrmQ

    packages = list(OrmQ.objects.order_by("id"))
    OrmQ.objects.filter(pk__in=[package.pk for package in packages]).delete()
    return [package.task for package in packages]


def run_queued_tasks():
    """Run the queued tasks in this process, as a worker would; return how many ran."""
    tasks = _take_queued_tasks()
    for task in tasks:
        module, name = task["func"].rsplit(".", 1)
        getattr(importlib.import_module(module), name)(*task["args"], **task.get("kwargs", {}))
    return len(tasks)


def clear_queue():
    """Drop every queued task."""
    _take_queued_tasks()
