"""Replies are queued in batches from a background thread of each web process (batched_enqueue.py)."""

import threading
import time

import pytest

from sessions_app.batched_enqueue import BatchedEnqueue
from sessions_app.models import Message, ReplyState, Role
from sessions_app.tasks import produce_replies_task
from tests.twilio_helpers import send_sms


class Recorder:
    """Stands in for the broker: what a queue hands over, batch by batch."""

    def __init__(self, fail_first: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.failures_left = fail_first
        self.lock = threading.Lock()

    def __call__(self, batch: list[int]) -> None:
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise ConnectionError("broker unreachable")
            self.batches.append(list(batch))


def test_it_hands_over_every_id_exactly_once_in_bounded_batches():
    sent = Recorder()
    queue = BatchedEnqueue("test", sent, max_batch=10, linger=0.05)
    for item in range(100):
        queue.add(item)
    assert queue.flush(timeout=10)
    handed_over = [item for batch in sent.batches for item in batch]
    assert sorted(handed_over) == list(range(100))
    assert all(1 <= len(batch) <= 10 for batch in sent.batches)
    assert len(sent.batches) < 100  # gathered, not one publish per id


def test_after_a_quiet_spell_an_id_goes_at_once_and_only_back_to_back_batches_linger():
    sent = Recorder()
    queue = BatchedEnqueue("test", sent, max_batch=10, linger=30)  # a linger no test could sit out
    queue.add(1)
    assert queue.flush(timeout=5)  # not held for the linger: nothing was sent recently
    queue.add(2)
    assert not queue.flush(timeout=0.5)  # right after a batch: held to gather more
    for item in range(3, 12):
        queue.add(item)  # ...until the batch is full
    assert queue.flush(timeout=5)
    assert sent.batches == [[1], list(range(2, 12))]


def test_a_lingering_batch_leaves_one_linger_after_the_previous_one_not_later():
    sent = Recorder()
    queue = BatchedEnqueue("test", sent, max_batch=10, linger=1.0)
    queue.add(1)
    assert queue.flush(timeout=5)
    time.sleep(0.7)  # most of the linger has passed since that batch left
    queue.add(2)
    # Held only for what is left of the linger (0.3 s), not for a whole linger from now.
    assert queue.flush(timeout=0.65)
    assert sent.batches == [[1], [2]]


def test_a_failed_hand_over_is_logged_and_later_ids_still_go(caplog):
    sent = Recorder(fail_first=1)
    queue = BatchedEnqueue("test", sent, max_batch=5)
    queue.add(1)
    assert queue.flush(timeout=10)
    queue.add(2)
    assert queue.flush(timeout=10)
    assert sent.batches == [[2]]
    assert "Could not queue test" in caplog.text


def test_flush_in_a_process_that_added_nothing_returns_at_once():
    assert BatchedEnqueue("test", Recorder(), max_batch=5).flush(timeout=0)


@pytest.mark.django_db
def test_one_batch_task_answers_each_of_its_messages_once(client):
    for number in ("+15550000001", "+15550000002", "+15550000003"):
        send_sms(client, number, "Hello")  # on-commit callbacks not run: the replies are still owed
    owed = list(Message.objects.filter(reply_state=ReplyState.OWED).values_list("pk", flat=True))
    assert len(owed) == 3
    produce_replies_task(owed)
    produce_replies_task(owed)  # a redelivered batch
    assert Message.objects.filter(role=Role.AGENT).count() == 3
    assert set(Message.objects.filter(role=Role.AGENT).values_list("in_reply_to_id", flat=True)) == set(owed)
    assert not Message.objects.filter(reply_state=ReplyState.OWED).exists()
