package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// memBlobs is an in-memory blob store, to stop the store at its crash
// points (the S3 behaviour itself is tested against a real server in
// media/store/s3blob).
type memBlobs struct {
	mu   sync.Mutex
	m    map[string][]byte
	puts int
	down bool
}

func newMemBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}} }

func (b *memBlobs) fail() error {
	if b.down {
		return fmt.Errorf("mem: %w: down", ErrUnavailable)
	}
	return nil
}

func (b *memBlobs) Put(_ context.Context, key string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return err
	}
	if bytes.Equal(b.m[key], data) {
		return nil
	}
	b.puts++
	b.m[key] = bytes.Clone(data)
	return nil
}

func (b *memBlobs) Get(_ context.Context, key string, limit int64) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return nil, err
	}
	d, ok := b.m[key]
	if !ok {
		return nil, fmt.Errorf("mem: %s: %w", key, ErrNotFound)
	}
	return bytes.Clone(d), nil
}

func (b *memBlobs) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return err
	}
	delete(b.m, key)
	return nil
}

func (b *memBlobs) List(_ context.Context, prefix string, fn func(string, int64) error) error {
	b.mu.Lock()
	if err := b.fail(); err != nil {
		b.mu.Unlock()
		return err
	}
	m := map[string]int64{}
	for k, v := range b.m {
		if strings.HasPrefix(k, prefix) {
			m[k] = int64(len(v))
		}
	}
	b.mu.Unlock()
	for k, n := range m {
		if err := fn(k, n); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBlobs) String() string { return "mem://test/" }

// A deletion stopped part-way (some objects gone, the index not yet) is
// finished at the next start without a "missing" alarm, and nothing
// deleted comes back; a write stopped after its upload is re-indexed
// without an upload.
func TestBlobCrashPoints(t *testing.T) {
	for _, point := range []string{pointFileRemoved, pointFilesRemoved} {
		t.Run(point, func(t *testing.T) {
			dir, b := t.TempDir(), newMemBlobs()
			s := openT(t, dir, Options{MinFree: -1, Blobs: b})
			for i := range 20 {
				putSeg(t, s, cam, i, 300)
			}
			crashAt(s, point, 1)
			if _, err := s.DeleteBefore(cam, segAt(cam, 10).Start.Add(time.Nanosecond)); !errors.Is(err, errCrash) {
				t.Fatalf("interrupted retention: %v", err)
			}
			s.Close()
			s = openT(t, dir, Options{MinFree: -1, Blobs: b})
			if r := s.Recovery(); len(r.Missing) != 0 || len(r.Reindexed) != 0 {
				t.Errorf("recovery after an interrupted deletion: %+v", r)
			}
			segs, _ := s.Segments(cam, base, base.Add(time.Hour))
			if len(segs) != 10 || segIndex(segs[0]) != 10 {
				t.Errorf("after recovery %d segments from %d, want 10 from 10", len(segs), segIndex(segs[0]))
			}
			if a := s.Health().Alarm(); a != "" {
				t.Errorf("alarm: %s", a)
			}
			n := 0
			b.List(context.Background(), "segments/", func(string, int64) error { n++; return nil })
			if n != 10 {
				t.Errorf("%d segment objects left, want 10", n)
			}
		})
	}
	t.Run(pointBeforeIndex, func(t *testing.T) {
		dir, b := t.TempDir(), newMemBlobs()
		s := openT(t, dir, Options{MinFree: -1, Blobs: b})
		for i := range 5 {
			putSeg(t, s, cam, i, 300)
		}
		crashAt(s, pointBeforeIndex, 1)
		m := segAt(cam, 5)
		if err := s.Put(m, payload(5, 300)); !errors.Is(err, errCrash) {
			t.Fatalf("interrupted write: %v", err)
		}
		s.Close()
		puts := b.puts
		s = openT(t, dir, Options{MinFree: -1, Blobs: b})
		if r := s.Recovery(); len(r.Reindexed) != 1 {
			t.Errorf("recovery: %+v", r)
		}
		if err := s.Put(m, payload(5, 300)); err != nil || b.puts != puts {
			t.Errorf("putting it again: %v, %d uploads", err, b.puts-puts)
		}
	})
}

// A blob store down at Open: the store opens, writes wait for the
// reconciliation (ErrUnavailable, alarm), and go through once it answers;
// an index of files is not opened over a blob store, nor the other way.
func TestBlobStoreDownAtOpen(t *testing.T) {
	dir, b := t.TempDir(), newMemBlobs()
	s := openT(t, dir, Options{MinFree: -1, Blobs: b})
	putSeg(t, s, cam, 0, 300)
	s.Close()
	b.down = true
	s = openT(t, dir, Options{MinFree: -1, Blobs: b})
	m := segAt(cam, 1)
	if err := s.Put(m, payload(1, 300)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("put with the blob store down: %v", err)
	}
	if h := s.Health(); !h.Unavailable {
		t.Errorf("no alarm: %+v", h)
	}
	b.down = false
	if err := s.Put(m, payload(1, 300)); err != nil {
		t.Fatal(err)
	}
	if a := s.Health().Alarm(); a != "" {
		t.Errorf("alarm after the blob store came back: %s", a)
	}
	s.Close()
	if _, err := Open(dir, Options{MinFree: -1}); err == nil || !strings.Contains(err.Error(), "keeps its files on mem://test/, not on disk") {
		t.Errorf("an index of a blob store opened on disk: %v", err)
	}
	disk := t.TempDir()
	s = openT(t, disk, Options{MinFree: -1})
	putSeg(t, s, cam, 0, 300)
	s.Close()
	if _, err := Open(disk, Options{MinFree: -1, Blobs: b}); err == nil || !strings.Contains(err.Error(), "keeps its files on disk, not on mem://test/") {
		t.Errorf("an index of files opened over a blob store: %v", err)
	}
}
