package release

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"
	"time"
)

// endlessStore answers with one segment after another, each a header
// frame and a ciphertext frame of size bytes, and counts what it handed
// out.
type endlessStore struct {
	size int
	mu   sync.Mutex
	sent int // frames handed out
	hdr  []byte
}

func (s *endlessStore) Next() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent++
	if s.sent%2 == 1 {
		return s.hdr, nil
	}
	return make([]byte, s.size), nil
}

func (s *endlessStore) frames() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// A store that answers as fast as it can makes the exporter hold no more
// than prefetchBytes read ahead plus the one segment in hand; taking a
// segment lets exactly as much more in; halt stops the reader.
func TestPrefetchBound(t *testing.T) {
	hdr, _ := json.Marshal(SegmentHeader{Start: time.Unix(1, 0), End: time.Unix(5, 0), SHA256: "00"})
	const size = 1 << 20
	st := &endlessStore{size: size, hdr: hdr}
	p := prefetch(st)
	defer func() { p.halt(); <-p.done }()
	per := size + len(hdr)
	most := prefetchBytes/per + 1 // queued, and one in hand
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the read-ahead to fill", func() bool { return st.frames() >= 2*most })
	time.Sleep(200 * time.Millisecond) // a reader without the bound reads on meanwhile
	if got := st.frames() / 2; got > most {
		t.Fatalf("read %d segments of %d bytes ahead with none taken, want at most %d (%d MiB)", got, per, most, prefetchBytes>>20)
	}
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held > prefetchBytes {
		t.Fatalf("%d bytes queued, bound %d", held, prefetchBytes)
	}
	before := st.frames()
	for range 3 {
		if _, err := p.next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("the reader to refill", func() bool { return st.frames() >= before+6 })
	time.Sleep(100 * time.Millisecond)
	if got := st.frames(); got > before+6 {
		t.Fatalf("three segments taken let %d more frames in, want 6", got-before)
	}
	p.halt()
	p.next(context.Background()) // make room, so the reader sees the halt
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the reader did not stop after halt")
	}
}

// The end of the store's answer reaches the taker after what was queued.
func TestPrefetchEnd(t *testing.T) {
	hdr, _ := json.Marshal(SegmentHeader{Start: time.Unix(1, 0), End: time.Unix(5, 0), SHA256: "00"})
	fs := &listFrames{frames: [][]byte{hdr, []byte("ct")}}
	p := prefetch(fs)
	defer func() { p.halt(); <-p.done }()
	sv, err := p.next(context.Background())
	if err != nil || string(sv.sealed) != "ct" || string(sv.header) != string(hdr) {
		t.Fatalf("got %+v %v", sv, err)
	}
	if _, err := p.next(context.Background()); err != io.EOF {
		t.Fatalf("after the last segment: %v, want io.EOF", err)
	}
}

type listFrames struct{ frames [][]byte }

func (l *listFrames) Next() ([]byte, error) {
	if len(l.frames) == 0 {
		return nil, io.EOF
	}
	f := l.frames[0]
	l.frames = l.frames[1:]
	return f, nil
}
