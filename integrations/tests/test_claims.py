"""Work claiming between workers, tasks that run twice, and the sweep for lost tasks."""

import threading

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from integrations import claims, services, tasks
from integrations.models import SyncLog
from integrations.sync import reads
from leads.models import Lead
from teams.tests.factories import make_lead, make_member, make_team

from .conftest import unique_email
from .task_queue import clear_queue, queued_lead_ids, run_queued_tasks

pytestmark = pytest.mark.django_db


def queued_leads(count):
    team = make_team()
    member = make_member(team)
    return [make_lead(team, member, sync_status=Lead.SyncStatus.QUEUED,
                      sync_queued_at=timezone.now()) for _ in range(count)]


def ids_of(leads):
    return [lead.pk for lead in leads]


def ago(seconds):
    return timezone.now() - timezone.timedelta(seconds=seconds)


def test_claim_takes_queued_leads():
    leads = queued_leads(3)

    claim_id, claimed = claims.claim(ids_of(leads))

    assert claimed == ids_of(leads)
    rows = Lead.objects.filter(pk__in=claimed)
    assert {row.sync_claim for row in rows} == {claim_id}
    assert all(row.sync_claimed_until > timezone.now() for row in rows)


def test_second_claim_gets_nothing_until_release():
    leads = queued_leads(2)
    first_id, first = claims.claim(ids_of(leads))

    _, second = claims.claim(ids_of(leads))
    claims.release(first_id)
    _, third = claims.claim(ids_of(leads))

    assert first == ids_of(leads)
    assert second == []
    assert third == ids_of(leads)


def test_claim_skips_leads_not_queued():
    leads = queued_leads(2)
    Lead.objects.filter(pk=leads[0].pk).update(sync_status=Lead.SyncStatus.SYNCED)

    _, claimed = claims.claim(ids_of(leads))

    assert claimed == [leads[1].pk]


def test_expired_claim_can_be_taken_again():
    leads = queued_leads(1)
    Lead.objects.filter(pk=leads[0].pk).update(sync_claim="f" * 32,
                                               sync_claimed_until=ago(1))

    claim_id, claimed = claims.claim(ids_of(leads))

    assert claimed == ids_of(leads)
    assert Lead.objects.get(pk=leads[0].pk).sync_claim == claim_id


def test_claimed_block_releases_on_error():
    leads = queued_leads(1)

    with pytest.raises(RuntimeError):
        with claims.claimed(ids_of(leads)) as claimed:
            assert claimed == ids_of(leads)
            raise RuntimeError("the sync failed")

    lead = Lead.objects.get(pk=leads[0].pk)
    assert lead.sync_claim == ""
    assert lead.sync_claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_overlap():
    leads = queued_leads(60)
    results = []
    errors = []
    start = threading.Barrier(4)

    def claim_all():
        try:
            start.wait()
            results.append(claims.claim(ids_of(leads))[1])
        except Exception as error:  # Reported by the asserts below.
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    claimed = [lead_id for result in results for lead_id in result]
    assert errors == []
    assert len(results) == 4
    assert sorted(claimed) == ids_of(leads)
    assert len(claimed) == len(set(claimed))


def test_sweep_queues_stale_leads_again(django_capture_on_commit_callbacks, settings):
    settings.SYNC_STALE_SECONDS = 60
    stale, recent, claimed, expired = queued_leads(4)
    Lead.objects.filter(pk__in=[stale.pk, claimed.pk, expired.pk]).update(
        sync_queued_at=ago(120))
    Lead.objects.filter(pk=claimed.pk).update(
        sync_claim="a" * 32, sync_claimed_until=timezone.now() + timezone.timedelta(minutes=1))
    Lead.objects.filter(pk=expired.pk).update(sync_claim="b" * 32, sync_claimed_until=ago(1))
    clear_queue()

    with django_capture_on_commit_callbacks(execute=True):
        count = claims.sweep_stale_syncs()

    assert count == 2
    assert sorted(queued_lead_ids()) == sorted([stale.pk, expired.pk])
    assert Lead.objects.get(pk=stale.pk).sync_queued_at > ago(5)
    assert Lead.objects.get(pk=recent.pk).sync_queued_at < ago(0)


def test_sweep_ignores_leads_not_queued(django_capture_on_commit_callbacks, settings):
    settings.SYNC_STALE_SECONDS = 60
    leads = queued_leads(2)
    Lead.objects.filter(pk__in=ids_of(leads)).update(sync_queued_at=ago(600))
    Lead.objects.filter(pk=leads[0].pk).update(sync_status=Lead.SyncStatus.SYNCED)
    Lead.objects.filter(pk=leads[1].pk).update(sync_status=Lead.SyncStatus.FAILED)
    clear_queue()

    with django_capture_on_commit_callbacks(execute=True):
        count = claims.sweep_stale_syncs()

    assert count == 0
    assert queued_lead_ids() == []


def test_sweep_schedule_exists_after_migrate():
    schedule = Schedule.objects.get(name=claims.SWEEP_SCHEDULE_NAME)

    assert schedule.func == claims.SWEEP_TASK
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.repeats == -1


def test_sync_task_twice_syncs_once(connected_team, sandbox, django_capture_on_commit_callbacks):
    email = unique_email("twice-task")
    with django_capture_on_commit_callbacks(execute=True):
        lead = make_lead(connected_team.team, connected_team.member, email=email)
        services.enqueue_syncs([lead.pk])

    first = tasks.sync_lead(lead.pk)
    second = tasks.sync_lead(lead.pk)

    records = [row for row in sandbox.store.records("lead")
               if row.get("emailaddress1") == email]
    assert first == SyncLog.Outcome.CREATED
    assert second is None
    assert len(records) == 1
    assert SyncLog.objects.filter(lead=lead).count() == 1


def test_lead_of_killed_worker_syncs_after_sweep(connected_team, sandbox, settings,
                                                 django_capture_on_commit_callbacks):
    settings.SYNC_STALE_SECONDS = 60
    email = unique_email("killed")
    lead = make_lead(connected_team.team, connected_team.member, email=email,
                     sync_status=Lead.SyncStatus.QUEUED, sync_queued_at=ago(300))
    # A worker claimed the lead and died: its task is gone and the claim lives on.
    claims.claim([lead.pk])
    clear_queue()

    assert claims.sweep_stale_syncs() == 0
    Lead.objects.filter(pk=lead.pk).update(sync_claimed_until=ago(1))
    with django_capture_on_commit_callbacks(execute=True):
        swept = claims.sweep_stale_syncs()
    outcome = tasks.sync_lead(queued_lead_ids()[0])

    lead.refresh_from_db()
    assert swept == 1
    assert outcome == SyncLog.Outcome.CREATED
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.sync_claim == ""
    assert len([row for row in sandbox.store.records("lead")
                if row.get("emailaddress1") == email]) == 1


@pytest.mark.parametrize("sync_now", [services.sync_lead_now,
                                      lambda lead_id: services.sync_leads_now([lead_id])])
def test_final_write_ends_claim(connected_team, sandbox, sync_now):
    # No release runs here, as when a worker is killed right after the final write.
    lead = make_lead(connected_team.team, connected_team.member,
                     email=unique_email("final-write"),
                     sync_status=Lead.SyncStatus.QUEUED, sync_queued_at=timezone.now())
    claim_id, claimed = claims.claim([lead.pk])

    sync_now(lead.pk)

    lead.refresh_from_db()
    assert claimed == [lead.pk]
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.sync_claim == ""
    assert lead.sync_claimed_until is None
    assert lead.sync_state_label == "Synced"


def queue_new_lead(connected_team, capture_on_commit, tag, **fields):
    """Create a lead of the connected team and mark it queued, with no task in the queue."""
    with capture_on_commit(execute=True):
        lead = make_lead(connected_team.team, connected_team.member, email=unique_email(tag),
                         **fields)
        services.enqueue_syncs([lead.pk])
    clear_queue()
    return lead


def before_reads(monkeypatch, action):
    """Run `action(lead)` each time a sync is about to read Dynamics for a lead."""
    gather = reads.gather

    def action_then_gather(lead_row, *args, **kwargs):
        action(lead_row)
        return gather(lead_row, *args, **kwargs)

    monkeypatch.setattr(reads, "gather", action_then_gather)


def test_requeued_lead_syncs_again(connected_team, sandbox, monkeypatch,
                                   django_capture_on_commit_callbacks):
    lead = queue_new_lead(connected_team, django_capture_on_commit_callbacks,
                          "edited-during-sync", job_title="Clerk")

    def edit_and_sync_again(lead_row):
        # The member edits the lead and clicks Sync while this sync reads Dynamics.
        if Lead.objects.filter(pk=lead.pk, job_title="Clerk").update(job_title="Engineer"):
            services.enqueue_syncs([lead.pk])

    before_reads(monkeypatch, edit_and_sync_again)
    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.sync_lead(lead.pk)
    lead.refresh_from_db()
    status_after_first = lead.sync_status
    ran = run_queued_tasks()

    lead.refresh_from_db()
    records = [row for row in sandbox.store.records("lead")
               if row.get("emailaddress1") == lead.email]
    assert first == SyncLog.Outcome.CREATED
    assert status_after_first == Lead.SyncStatus.QUEUED
    assert ran >= 1
    assert list(SyncLog.objects.filter(lead=lead).order_by("pk")
                .values_list("outcome", flat=True)) == [SyncLog.Outcome.CREATED,
                                                        SyncLog.Outcome.UPDATED]
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.sync_claim == ""
    assert len(records) == 1
    assert records[0]["jobtitle"] == "Engineer"


def test_deleted_lead_sync_not_logged(connected_team, sandbox, monkeypatch,
                                      django_capture_on_commit_callbacks):
    lead = queue_new_lead(connected_team, django_capture_on_commit_callbacks,
                          "deleted-during-sync")

    before_reads(monkeypatch, lambda lead_row: Lead.objects.filter(pk=lead_row.pk).delete())
    outcome = tasks.sync_lead(lead.pk)

    assert outcome is None
    assert not Lead.objects.filter(pk=lead.pk).exists()
    assert not SyncLog.objects.filter(lead_id=lead.pk).exists()


def test_requeued_lead_survives_bug(connected_team, sandbox, monkeypatch,
                                    django_capture_on_commit_callbacks):
    lead = queue_new_lead(connected_team, django_capture_on_commit_callbacks,
                          "error-during-sync")
    calls = []

    def requeue_then_fail(lead_row):
        calls.append(lead_row.pk)
        if len(calls) == 1:
            services.enqueue_syncs([lead.pk])
            raise RuntimeError("a bug in the first sync")

    before_reads(monkeypatch, requeue_then_fail)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            tasks.sync_lead(lead.pk)
    lead.refresh_from_db()
    status_after_error = lead.sync_status
    run_queued_tasks()

    lead.refresh_from_db()
    assert status_after_error == Lead.SyncStatus.QUEUED
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.sync_claim == ""
