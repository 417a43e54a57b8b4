package policystore

import (
	"sync"
	"time"

	"github.com/custos-cctv/custos/policy/audit"
)

// Queue journals events off the caller's path, in batches: the policy
// state machine records every applied command, and three fsyncs each inside
// Raft's apply would put them on every commit's latency (they were most of
// it). The command itself is already durable in the Raft log when it
// applies; the queue only decides when its journal line is written, and a
// line a crash lost is written again when Raft replays the log (CmdAudit).
// Readers flush first, so nothing queued is ever missing from what they see.
//
// Writes are at least minGap apart: a lone command is written at once, a
// burst after at most minGap as one batch. On a disk the node's Raft log
// shares, the journal's fsyncs per command otherwise slowed every commit.
type Queue struct {
	j      *audit.Journal
	logf   func(string, ...any)
	append func([]audit.Event) ([]audit.Entry, error) // j.AppendBatch; tests count calls

	mu      sync.Mutex
	cond    *sync.Cond    // signalled when written moves or the queue closes
	pending []audit.Event // guarded by mu
	// retry holds a batch the journal refused (a full disk): it goes first
	// in the next write, tried again every retryEvery, so a moment without
	// space leaves no hole once space returns. Guarded by mu; bounded.
	retry   []audit.Event
	queued  uint64 // guarded by mu: events ever enqueued
	written uint64 // guarded by mu: events ever taken by a batch
	closed  bool   // guarded by mu
	wake    chan struct{}
	urgent  chan struct{} // a reader waits: write without waiting out minGap
	done    chan struct{}
}

// NewQueue starts a queue writing to j; logf reports what j refuses.
// Close stops it.
func NewQueue(j *audit.Journal, logf func(string, ...any)) *Queue {
	q := &Queue{j: j, logf: logf, append: j.AppendBatch, wake: make(chan struct{}, 1), urgent: make(chan struct{}, 1), done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.loop()
	return q
}

// Enqueue records e soon. After close it writes e at once.
func (q *Queue) Enqueue(e audit.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.write([]audit.Event{e})
		return
	}
	q.pending = append(q.pending, e)
	q.queued++
	// Under mu: Close closes wake only after it set closed under mu.
	select {
	case q.wake <- struct{}{}:
	default:
	}
	q.mu.Unlock()
}

// Flush waits until every event enqueued before the call is written (or
// its write failed and was reported).
func (q *Queue) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.queued
	if q.written < target {
		select {
		case q.urgent <- struct{}{}:
		default:
		}
	}
	for q.written < target && !q.closed {
		q.cond.Wait()
	}
}

// Close writes what is queued and stops the writer.
func (q *Queue) Close() {
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

const (
	// retryEvery is how often a refused batch is tried again.
	retryEvery = time.Second
	// maxRetry bounds the events kept for a retry; beyond it the oldest
	// are dropped, and said so.
	maxRetry = 100_000
	// minGap is the least time between two writes (three fsyncs each) while
	// events keep coming.
	minGap = 50 * time.Millisecond
)

func (q *Queue) loop() {
	defer close(q.done)
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case _, open := <-q.wake:
			if !open || !q.linger(time.Until(last.Add(minGap))) {
				q.drain()
				q.mu.Lock()
				if n := len(q.retry); n > 0 {
					q.logf("node: AUDIT FAILURE: %d events could not be journaled before the node stopped", n)
				}
				q.cond.Broadcast()
				q.mu.Unlock()
				return
			}
		case <-t.C:
			q.mu.Lock()
			idle := len(q.retry) == 0
			q.mu.Unlock()
			if idle {
				continue
			}
		}
		// One batch: what comes meanwhile wakes the loop again, which
		// then keeps the gap.
		q.writeOnce()
		last = time.Now()
	}
}

// linger waits d, gathering what else is enqueued meanwhile, unless a
// reader flushes; it reports false if the queue closed.
func (q *Queue) linger(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-q.urgent:
			return true
		case _, open := <-q.wake:
			if !open {
				return false
			}
		}
	}
}

// drain writes what is queued until nothing is, or a write is refused.
func (q *Queue) drain() {
	for q.writeOnce() {
	}
}

// writeOnce writes what is queued, after any batch waiting for a retry, in
// one batch, and reports whether it wrote anything. A refused batch stays
// for the next try; the events it took from pending count as written
// (reported), so readers that flush never wait on a full disk.
func (q *Queue) writeOnce() bool {
	q.mu.Lock()
	fresh := q.pending
	batch := append(q.retry, fresh...)
	q.pending, q.retry = nil, nil
	q.mu.Unlock()
	if len(batch) == 0 {
		return false
	}
	ok := q.write(batch)
	q.mu.Lock()
	q.written += uint64(len(fresh))
	if !ok {
		if over := len(batch) - maxRetry; over > 0 {
			q.logf("node: AUDIT FAILURE: %d events dropped: more than %d wait for the journal", over, maxRetry)
			batch = batch[over:]
		}
		q.retry = append(batch, q.retry...)
	}
	q.cond.Broadcast()
	q.mu.Unlock()
	return ok // if refused, the ticker tries again
}

// write appends batch and reports whether it is in the journal. A refused
// write is undone by the journal (no entry written), so it can be retried;
// entries written before a later step failed are in, and are not retried.
func (q *Queue) write(batch []audit.Event) bool {
	ents, err := q.append(batch)
	if err == nil {
		return true
	}
	q.logf("node: AUDIT FAILURE: %v (%d events, first %s %s)", err, len(batch), batch[0].Action, batch[0].Object)
	return len(ents) == len(batch)
}
