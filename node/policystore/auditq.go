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
// applies; the queue only decides when its journal line is written. Readers
// flush first, so nothing queued is ever missing from what they see.
type Queue struct {
	j    *audit.Journal
	logf func(string, ...any)

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
	done    chan struct{}
}

// NewQueue starts a queue writing to j; logf reports what j refuses.
// Close stops it.
func NewQueue(j *audit.Journal, logf func(string, ...any)) *Queue {
	q := &Queue{j: j, logf: logf, wake: make(chan struct{}, 1), done: make(chan struct{})}
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
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Flush waits until every event enqueued before the call is written (or
// its write failed and was reported).
func (q *Queue) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	target := q.queued
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
)

func (q *Queue) loop() {
	defer close(q.done)
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case _, open := <-q.wake:
			if !open {
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
		q.drain()
	}
}

// drain writes what is queued, after any batch waiting for a retry. A
// refused batch stays for the next try; the events it took from pending
// count as written (reported), so readers that flush never wait on a full
// disk.
func (q *Queue) drain() {
	for {
		q.mu.Lock()
		fresh := q.pending
		batch := append(q.retry, fresh...)
		q.pending, q.retry = nil, nil
		q.mu.Unlock()
		if len(batch) == 0 {
			return
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
		if !ok {
			return // the ticker tries again
		}
	}
}

// write appends batch and reports whether it is in the journal. A refused
// write is undone by the journal (no entry written), so it can be retried;
// entries written before a later step failed are in, and are not retried.
func (q *Queue) write(batch []audit.Event) bool {
	ents, err := q.j.AppendBatch(batch)
	if err == nil {
		return true
	}
	q.logf("node: AUDIT FAILURE: %v (%d events, first %s %s)", err, len(batch), batch[0].Action, batch[0].Object)
	return len(ents) == len(batch)
}
