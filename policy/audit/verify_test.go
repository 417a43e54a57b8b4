package audit

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// rehash returns line with edit applied and its hash recomputed: what a
// careful forger who does not rewrite the rest of the chain produces.
func rehash(t testing.TB, line []byte, edit func(*Entry)) []byte {
	t.Helper()
	e := mustDecode(t, line)
	edit(&e)
	e.Hash = e.sum()
	b, err := encodeLine(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flipHash changes the first hex digit of the "hash" in b.
func flipHash(b []byte) []byte {
	b = bytes.Clone(b)
	i := bytes.Index(b, []byte(`"hash":"`)) + len(`"hash":"`)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return b
}

func TestVerifyFindsFirstDamage(t *testing.T) {
	const n = 10
	edit := func(i int, f func([]byte) []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			ls := lines(t, dir)
			ls[i] = f(ls[i])
			writeLines(t, dir, ls)
		}
	}
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, dir string)
		fault    Fault
		firstBad uint64
		line     int
	}{
		{"edited field in the middle", edit(4, func(b []byte) []byte {
			return bytes.Replace(b, []byte("alice"), []byte("mallory"), 1)
		}), FaultEdited, 5, 5},
		{"edited and re-hashed", edit(4, func(b []byte) []byte {
			return rehash(t, b, func(e *Entry) { e.Decision = Deny })
		}), FaultEdited, 5, 5},
		{"edited hash", edit(6, flipHash), FaultEdited, 7, 7},
		{"deleted middle line", func(t *testing.T, dir string) {
			writeLines(t, dir, slices.Delete(lines(t, dir), 4, 5))
		}, FaultDeleted, 5, 5},
		{"deleted first line", func(t *testing.T, dir string) {
			writeLines(t, dir, lines(t, dir)[1:])
		}, FaultDeleted, 1, 1},
		{"swapped lines", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			ls[3], ls[4] = ls[4], ls[3]
			writeLines(t, dir, ls)
		}, FaultReordered, 4, 4},
		{"swapped far apart", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			ls[2], ls[8] = ls[8], ls[2]
			writeLines(t, dir, ls)
		}, FaultReordered, 3, 3},
		{"duplicated line", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			writeLines(t, dir, slices.Insert(ls, 5, ls[4]))
		}, FaultReordered, 6, 6},
		{"deleted last line", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			writeLines(t, dir, ls[:n-1])
		}, FaultTruncated, n, 0},
		{"deleted last three lines", func(t *testing.T, dir string) {
			writeLines(t, dir, lines(t, dir)[:n-3])
		}, FaultTruncated, n - 2, 0},
		{"journal emptied", func(t *testing.T, dir string) {
			writeLines(t, dir, nil)
		}, FaultTruncated, 1, 0},
		{"journal removed", func(t *testing.T, dir string) {
			os.Remove(auditFile(dir, journalName))
		}, FaultTruncated, 1, 0},
		{"garbage line inserted", func(t *testing.T, dir string) {
			writeLines(t, dir, slices.Insert(lines(t, dir), 5, []byte("\x00garbage{\n")))
		}, FaultMalformed, 6, 6},
		{"line replaced by garbage", edit(2, func([]byte) []byte { return []byte("}{\n") }), FaultMalformed, 3, 3},
		{"empty line", edit(2, func([]byte) []byte { return []byte("\n") }), FaultMalformed, 3, 3},
		{"reformatted line", edit(2, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`,"node"`), []byte(`, "node"`), 1)
		}), FaultMalformed, 3, 3},
		{"unknown field", edit(2, func(b []byte) []byte {
			return bytes.Replace(b, []byte(`{"seq"`), []byte(`{"x":1,"seq"`), 1)
		}), FaultMalformed, 3, 3},
		{"upper-case hex", edit(2, func(b []byte) []byte {
			i := bytes.Index(b, []byte(`"hash":"`)) + 8
			return append(append(b[:i:i], bytes.ToUpper(b[i:i+64])...), b[i+64:]...)
		}), FaultMalformed, 3, 3},
		{"oversize line", edit(2, func([]byte) []byte {
			return append(bytes.Repeat([]byte("x"), MaxLineBytes+10), '\n')
		}), FaultMalformed, 3, 3},
		{"head missing", func(t *testing.T, dir string) {
			os.Remove(auditFile(dir, headName))
		}, FaultHead, n + 1, 0},
		{"head edited", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(auditFile(dir, headName))
			os.WriteFile(auditFile(dir, headName), flipHash(b), 0o600)
		}, FaultHead, n, 0},
		{"head replaced by one not on the chain", func(t *testing.T, dir string) {
			b, _ := encodeRecord(position{7, Digest{7}})
			os.WriteFile(auditFile(dir, headName), b, 0o600)
		}, FaultHead, 8, 0},
		{"head one behind with a wrong hash", func(t *testing.T, dir string) {
			b, _ := encodeRecord(position{n - 1, Digest{1}})
			os.WriteFile(auditFile(dir, headName), b, 0o600)
		}, FaultHead, n, 0},
		{"head is a symlink", func(t *testing.T, dir string) {
			os.Rename(auditFile(dir, headName), auditFile(dir, "h"))
			os.Symlink("h", auditFile(dir, headName))
		}, FaultHead, n + 1, 0},
		{"first entry given a prev", edit(0, func(b []byte) []byte {
			return rehash(t, b, func(e *Entry) { e.Prev[0] = 1 })
		}), FaultEdited, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := build(t, n)
			wantOK(t, verify(t, dir))
			tc.damage(t, dir)
			r := verify(t, dir)
			if r.OK || r.Fault != tc.fault || r.FirstBad != tc.firstBad || r.Line != tc.line || r.Problem == "" {
				t.Fatalf("Verify = %+v\nwant fault %s at entry %d, line %d", r, tc.fault, tc.firstBad, tc.line)
			}
			t.Log(r)
		})
	}
}

// pruned makes a closed journal of entries a day apart, days 0..9, pruned
// with a 5-day retention at day 10: entries 6..10 and the prune's event 11
// are left, and a checkpoint for entry 5.
func pruned(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	j, err := Open(dir, Options{Retention: 5 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := j.Append(Event{Time: t0.Add(time.Duration(i) * 24 * time.Hour), Action: "grant"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := j.Prune(t0.Add(10 * 24 * time.Hour)); n != 5 || err != nil {
		t.Fatalf("Prune = %d, %v; want 5", n, err)
	}
	j.Close()
	return dir
}

func TestVerifyChecksCheckpoint(t *testing.T) {
	editCP := func(f func(*Checkpoint), resum bool) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			b, err := os.ReadFile(auditFile(dir, checkpointName))
			if err != nil {
				t.Fatal(err)
			}
			c, err := decodeCheckpoint(b)
			if err != nil {
				t.Fatal(err)
			}
			f(&c)
			nb, _ := c.encode()
			if !resum { // keep the old sum
				nb = append(nb[:bytes.Index(nb, []byte(`"sum"`))], b[bytes.Index(b, []byte(`"sum"`)):]...)
			}
			os.WriteFile(auditFile(dir, checkpointName), nb, 0o600)
		}
	}
	for _, tc := range []struct {
		name     string
		damage   func(*testing.T, string)
		fault    Fault
		firstBad uint64
	}{
		{"time edited", editCP(func(c *Checkpoint) { c.Time = c.Time.Add(time.Hour) }, false), FaultCheckpoint, 6},
		{"seq edited", editCP(func(c *Checkpoint) { c.Seq = 4 }, false), FaultCheckpoint, 6},
		{"hash edited and re-summed", editCP(func(c *Checkpoint) { c.Hash[3] ^= 1 }, true), FaultCheckpoint, 6},
		{"seq edited and re-summed", editCP(func(c *Checkpoint) { c.Seq = 4 }, true), FaultDeleted, 5},
		{"garbage", func(t *testing.T, dir string) {
			os.WriteFile(auditFile(dir, checkpointName), []byte("{}\n"), 0o600)
		}, FaultCheckpoint, 6},
		{"removed", func(t *testing.T, dir string) {
			os.Remove(auditFile(dir, checkpointName))
		}, FaultDeleted, 1},
		{"covers entries still in the journal, with a wrong hash", func(t *testing.T, dir string) {
			b, _ := Checkpoint{Seq: 8, Hash: Digest{8}, Time: t0, Pruned: t0}.encode()
			os.WriteFile(auditFile(dir, checkpointName), b, 0o600)
		}, FaultCheckpoint, 9},
		{"covers more than the journal holds", func(t *testing.T, dir string) {
			b, _ := Checkpoint{Seq: 30, Hash: Digest{8}, Time: t0, Pruned: t0}.encode()
			os.WriteFile(auditFile(dir, checkpointName), b, 0o600)
		}, FaultCheckpoint, 12},
		{"first kept line deleted", func(t *testing.T, dir string) {
			writeLines(t, dir, lines(t, dir)[1:])
		}, FaultDeleted, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pruned(t)
			wantOK(t, verify(t, dir))
			tc.damage(t, dir)
			r := verify(t, dir)
			if r.OK || r.Fault != tc.fault || r.FirstBad != tc.firstBad {
				t.Fatalf("Verify = %+v\nwant fault %s at entry %d", r, tc.fault, tc.firstBad)
			}
			t.Log(r)
		})
	}
}

func TestVerifyMissingDirectory(t *testing.T) {
	if _, err := Verify(t.TempDir()); err == nil {
		t.Error("Verify of a directory without a journal succeeded")
	}
}

func TestReportString(t *testing.T) {
	dir := build(t, 3)
	if s := verify(t, dir).String(); !strings.Contains(s, "OK") {
		t.Errorf("String() = %q", s)
	}
	writeLines(t, dir, lines(t, dir)[:2])
	if s := verify(t, dir).String(); !strings.Contains(s, "entry 3") {
		t.Errorf("String() = %q, want the broken entry named", s)
	}
}
