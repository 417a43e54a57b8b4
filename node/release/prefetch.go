package release

// Reading a camera's segments ahead of the export's checks: the store's
// answer keeps arriving while the custodians answer for the batch before
// and it is decrypted, instead of the stream waiting on each.

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/custos-cctv/custos/node/rpc"
)

// prefetchBytes bounds the ciphertext read ahead and not yet taken.
const prefetchBytes = 64 << 20

// served is one segment as the store sent it: its header and, unless the
// header says the store's copy is corrupt, its sealed ciphertext (or the
// error reading it).
type served struct {
	header []byte
	sealed []byte
	err    error
}

// frames is the store's answer, frame by frame (an *rpc.Reader).
type frames interface {
	Next() ([]byte, error)
}

// prefetcher reads the store's answer in a goroutine of its own. What it
// holds read ahead is at most prefetchBytes, plus the one segment in hand
// while it waits for room: a store cannot make the exporter buffer more by
// answering fast.
type prefetcher struct {
	rd frames

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []served // guarded by mu
	held    int      // guarded by mu: bytes in queue
	end     error    // guarded by mu: why the reader stopped (io.EOF at the end)
	stopped bool     // guarded by mu
	done    chan struct{}
}

func prefetch(rd frames) *prefetcher {
	p := &prefetcher{rd: rd, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.run()
	return p
}

func (p *prefetcher) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		stopped := p.stopped
		p.mu.Unlock()
		if stopped {
			return
		}
		sv, err := p.read()
		p.mu.Lock()
		if err != nil {
			p.end = err
			p.cond.Broadcast()
			p.mu.Unlock()
			return
		}
		n := len(sv.header) + len(sv.sealed)
		for p.held > 0 && p.held+n > prefetchBytes && !p.stopped {
			p.cond.Wait()
		}
		if p.stopped {
			p.mu.Unlock()
			return
		}
		p.queue = append(p.queue, sv)
		p.held += n
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// read reads one segment's frames: its header, and its ciphertext unless
// the header says none follows. A header that does not decode is passed on
// alone, and reading stops after it: take refuses it.
func (p *prefetcher) read() (served, error) {
	hb, err := p.rd.Next()
	if err != nil {
		return served{}, err
	}
	var h SegmentHeader
	if len(hb) > maxSegmentHeader || rpc.DecodeStrict(hb, &h) != nil {
		return served{header: hb}, nil
	}
	if h.Corrupt != "" {
		return served{header: hb}, nil
	}
	ct, err := p.rd.Next()
	if err == io.EOF {
		err = errors.New("the store ended its answer before the segment's data")
	}
	return served{header: hb, sealed: ct, err: err}, nil
}

// next returns the next segment, or why there is none (io.EOF: the end).
func (p *prefetcher) next(ctx context.Context) (served, error) {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 && p.end == nil {
		if err := ctx.Err(); err != nil {
			return served{}, err
		}
		p.cond.Wait()
	}
	if len(p.queue) == 0 {
		return served{}, p.end
	}
	sv := p.queue[0]
	p.queue[0] = served{}
	p.queue = p.queue[1:]
	p.held -= len(sv.header) + len(sv.sealed)
	p.cond.Broadcast()
	return sv, nil
}

// halt tells the reader to stop once its read returns; closing the
// connection ends a read in progress, and done says when it has stopped.
func (p *prefetcher) halt() {
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
}
