package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// seedLines are real journal lines, some damaged, as fuzz seeds.
func seedLines(t testing.TB) [][]byte {
	dir := build(t, 3)
	ls := lines(t, dir)
	return append(ls,
		flipHash(ls[0]),
		bytes.ToUpper(ls[1]),
		[]byte(`{"seq":1,"time":"2026-05-04T09:00:00Z","node":"","actor":"","action":"","object":"","decision":"","reason":"","prev":"","hash":""}`),
		[]byte(`{"seq":18446744073709551615}`),
		[]byte("null"), []byte("[]"), []byte(`{"seq":1}{"seq":2}`), nil,
	)
}

// FuzzDecodeEntry: the line decoder never panics; whatever it accepts
// re-encodes to the very same bytes; and any text in an event survives
// Append's normalisation, encoding and decoding unchanged.
func FuzzDecodeEntry(f *testing.F) {
	for _, l := range seedLines(f) {
		f.Add(l)
	}
	f.Add([]byte("\xff\xfe\x00\u2028<&>\"\\"))
	f.Fuzz(func(t *testing.T, line []byte) {
		if e, err := DecodeEntry(line); err == nil {
			again, err := encodeLine(e)
			if err != nil || !bytes.Equal(again, append(bytes.TrimSuffix(line, []byte("\n")), '\n')) {
				t.Fatalf("accepted %q but re-encodes as %q (%v)", line, again, err)
			}
		}
		s := string(line)
		ev, err := normalize(Event{Time: t0.Add(time.Duration(len(s)) * time.Nanosecond), Actor: s, Reason: s + s}, time.Now, s)
		if err != nil {
			t.Fatal(err)
		}
		e := Entry{Seq: 1, Event: ev}
		e.Hash = e.sum()
		b, err := encodeLine(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeEntry(b)
		if err != nil || back != e {
			t.Fatalf("event with %q: decoded %+v, %v; want %+v", s, back, err, e)
		}
	})
}

// FuzzVerify: Verify never panics on arbitrary journal, head and checkpoint
// files and its Report is consistent; Open either refuses with ErrDamaged
// or opens; and a journal Verify passes stays passing after Open and an
// Append.
func FuzzVerify(f *testing.F) {
	fsync = func(*os.File) error { return nil } // durability is not under test here
	f.Cleanup(func() { fsync = (*os.File).Sync })
	dir := pruned(f)
	read := func(name string) []byte {
		b, _ := os.ReadFile(auditFile(dir, name))
		return b
	}
	journal, head, cp := read(journalName), read(headName), read(checkpointName)
	f.Add(journal, head, cp, uint8(7))
	f.Add(journal, head, cp, uint8(3))
	f.Add(journal[:len(journal)-9], head, cp, uint8(7))
	f.Add(journal, head, []byte(nil), uint8(7))
	f.Add([]byte(nil), []byte(nil), []byte(nil), uint8(0))
	f.Add(bytes.Join(seedLines(f), []byte("\n")), head, cp, uint8(1))
	f.Fuzz(func(t *testing.T, journal, head, cp []byte, present uint8) {
		dir := t.TempDir()
		adir := filepath.Join(dir, subdir)
		if err := os.Mkdir(adir, 0o700); err != nil {
			t.Fatal(err)
		}
		for i, file := range []struct {
			name string
			data []byte
		}{{journalName, journal}, {headName, head}, {checkpointName, cp}} {
			if present&(1<<i) != 0 {
				if err := os.WriteFile(filepath.Join(adir, file.name), file.data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		before := verify(t, dir)
		consistent(t, before)
		j, err := Open(dir, Options{})
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open failed with %v, want only ErrDamaged", err)
			}
			if before.OK {
				t.Fatalf("Open refused a journal Verify passed: %v", err)
			}
			return
		}
		defer j.Close()
		if _, err := j.Append(event(1)); err != nil {
			t.Fatal(err)
		}
		after, err := j.Verify()
		if err != nil {
			t.Fatal(err)
		}
		consistent(t, after)
		if before.OK && (!after.OK || len(after.Notes) != 0) {
			t.Fatalf("OK before Open (%+v), not after Open and Append: %+v", before, after)
		}
	})
}

func consistent(t *testing.T, r Report) {
	t.Helper()
	if r.OK != (r.Fault == "") || r.OK != (r.FirstBad == 0) || r.OK != (r.Problem == "") {
		t.Fatalf("inconsistent report %+v", r)
	}
}
