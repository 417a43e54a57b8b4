package audit

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func vectorEntry() Entry {
	return Entry{Seq: 7, Prev: Digest{1, 2, 3}, Event: Event{
		Time: t0.Add(123456789), Node: "store-brno", Actor: "admin:alice", Action: "live-view",
		Object: "camera:till-1", Decision: Allow, Reason: "grant g-12",
	}}
}

// TestFormatVector pins the on-disk format: the line and the hash. The hash
// was also computed outside Go from the package doc's description (Python:
// sha256 over the length-prefixed fields), so a change here is a format
// change that old journals would fail.
func TestFormatVector(t *testing.T) {
	const (
		hash = "802309e5d116938b2771d46eb1747773dd1c9fd910b22b597bea8aa7ca15f12c"
		line = `{"seq":7,"time":"2026-05-04T09:00:00.123456789Z","node":"store-brno","actor":"admin:alice",` +
			`"action":"live-view","object":"camera:till-1","decision":"allow","reason":"grant g-12",` +
			`"prev":"0102030000000000000000000000000000000000000000000000000000000000","hash":"` + hash + `"}` + "\n"
	)
	e := vectorEntry()
	e.Hash = e.sum()
	if got := e.Hash.String(); got != hash {
		t.Errorf("hash %s, want %s", got, hash)
	}
	b, err := encodeLine(e)
	if err != nil || string(b) != line {
		t.Errorf("line\n%s, %v\nwant\n%s", b, err, line)
	}
	if back, err := DecodeEntry([]byte(line)); err != nil || back != e {
		t.Errorf("DecodeEntry = %+v, %v; want %+v", back, err, e)
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := vectorEntry()
	for name, change := range map[string]func(*Entry){
		"seq":      func(e *Entry) { e.Seq++ },
		"prev":     func(e *Entry) { e.Prev[31] = 1 },
		"time":     func(e *Entry) { e.Time = e.Time.Add(time.Nanosecond) },
		"node":     func(e *Entry) { e.Node += "x" },
		"actor":    func(e *Entry) { e.Actor += "x" },
		"action":   func(e *Entry) { e.Action += "x" },
		"object":   func(e *Entry) { e.Object += "x" },
		"decision": func(e *Entry) { e.Decision = Deny },
		"reason":   func(e *Entry) { e.Reason += "x" },
		// Length prefixes: moving bytes across a field boundary must show.
		"boundary": func(e *Entry) { e.Node, e.Actor = e.Node+e.Actor[:1], e.Actor[1:] },
		"empty":    func(e *Entry) { e.Decision, e.Reason = e.Decision+e.Reason, "" },
	} {
		e := base
		change(&e)
		if e.sum() == base.sum() {
			t.Errorf("changing %s leaves the hash unchanged", name)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := encodeLine(func() Entry { e := vectorEntry(); e.Hash = e.sum(); return e }())
	if err != nil {
		t.Fatal(err)
	}
	good = bytes.TrimSuffix(good, []byte("\n"))
	sub := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	for _, tc := range []struct {
		name string
		line []byte
		want string // in the error
	}{
		{"empty", nil, "empty line"},
		{"not JSON", []byte("seq=1"), "not a valid record"},
		{"array", []byte("[1]"), "not a valid record"},
		{"unknown field", sub(`"seq"`, `"sig":"",  "seq"`), "unknown field"},
		{"short hash", sub(`"prev":"01`, `"prev":"`), "want 64 hex digits"},
		{"bad hex", sub(`"prev":"01`, `"prev":"zz`), "not hex"},
		{"upper-case hex", sub(`"prev":"0102`, `"prev":"0A02`), "canonical"},
		{"seq 0", sub(`"seq":7`, `"seq":0`), "seq 0"},
		{"negative seq", sub(`"seq":7`, `"seq":-7`), "not a valid record"},
		{"huge seq", sub(`"seq":7`, `"seq":9223372036854775808`), "sequence numbers run"},
		{"time not UTC", sub(`09:00:00.123456789Z`, `11:00:00.123456789+02:00`), "canonical"},
		{"time not RFC 3339", sub(`2026-05-04T09`, `2026-05-04 09`), "time"},
		{"trailing zeros in time", sub(`.123456789Z`, `.1234567890Z`), "canonical"},
		{"spaces", sub(`,"node"`, ` ,"node"`), "canonical"},
		{"duplicate key", sub(`"node":"store-brno"`, `"node":"x","node":"store-brno"`), "canonical"},
		{"key case", sub(`"node"`, `"Node"`), "canonical"},
		{"null field", sub(`"reason":"grant g-12"`, `"reason":null`), "canonical"},
		{"invalid UTF-8", sub(`store-brno`, "store-\xffbrno"), "canonical"},
		{"escaped the other way", sub(`store-brno`, `store\u002dbrno`), "canonical"},
		{"trailing data", append(bytes.Clone(good), " {}"...), "after the JSON object"},
		{"field too long", sub(`grant g-12`, strings.Repeat("r", MaxFieldBytes+1)), "over the 1024-byte limit"},
		{"line too long", append(bytes.Repeat([]byte(" "), MaxLineBytes), good...), "over the 65536-byte limit"},
		{"hash mismatch", sub(`admin:alice`, `admin:mallory`), "do not match its hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEntry(tc.line)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DecodeEntry(%.80q) = %v, want an error about %q", tc.line, err, tc.want)
			}
		})
	}
}
