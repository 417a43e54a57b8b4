package node

import (
	"sync"

	"github.com/custos-cctv/custos/policy/audit"
)

// auditQueue journals events off the caller's path, in batches: the policy
// state machine records every applied command, and three fsyncs each inside
// Raft's apply would put them on every commit's latency (they were most of
// it). The command itself is already durable in the Raft log when it
// applies; the queue only decides when its journal line is written. Readers
// flush first, so nothing queued is ever missing from what they see.
type auditQueue struct {
	j    *audit.Journal
	logf func(string, ...any)

	mu      sync.Mutex
	cond    *sync.Cond    // signalled when written moves or the queue closes
	pending []audit.Event // guarded by mu
	queued  uint64        // guarded by mu: events ever enqueued
	written uint64        // guarded by mu: events ever taken by a batch
	closed  bool          // guarded by mu
	wake    chan struct{}
	done    chan struct{}
}

func newAuditQueue(j *audit.Journal, logf func(string, ...any)) *auditQueue {
	q := &auditQueue{j: j, logf: logf, wake: make(chan struct{}, 1), done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.loop()
	return q
}

// enqueue records e soon. After close it writes e at once.
func (q *auditQueue) enqueue(e audit.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.write([]audit.Event{e})
		return
	}
	q.pending = append(q.pending, e)
	q.queued++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// flush waits until every event enqueued before the call is written (or
// its write failed and was reported).
func (q *auditQueue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.queued
	for q.written < target && !q.closed {
		q.cond.Wait()
	}
}

// close writes what is queued and stops the writer.
func (q *auditQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.mu.Unlock()
	close(q.wake)
	<-q.done
}

func (q *auditQueue) loop() {
	defer close(q.done)
	for range q.wake {
		q.drain()
	}
	q.drain()
	q.mu.Lock()
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *auditQueue) drain() {
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		q.write(batch)
		q.mu.Lock()
		q.written += uint64(len(batch))
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

func (q *auditQueue) write(batch []audit.Event) {
	if _, err := q.j.AppendBatch(batch); err != nil {
		q.logf("node: AUDIT FAILURE: %v (%d events, first %s %s)", err, len(batch), batch[0].Action, batch[0].Object)
	}
}
