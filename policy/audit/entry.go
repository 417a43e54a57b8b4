package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Decisions an Event can record. A plain fact (a join, a prune) has none.
const (
	Allow = "allow"
	Deny  = "deny"
)

const (
	// MaxLineBytes is the longest journal line a decoder accepts, without
	// its newline. Append cannot produce a longer one: its fields are capped
	// at MaxFieldBytes.
	MaxLineBytes = 64 << 10
	// MaxFieldBytes is the longest text field of an entry. Append cuts
	// longer ones (at a character boundary) and ends them with truncMark.
	MaxFieldBytes = 1 << 10
)

const (
	entryDomain = "custos/audit/entry/v1"
	maxSeq      = 1 << 62 // far beyond any journal; keeps seq+1 from overflowing
	truncMark   = "...[truncated]"
)

// Event is one access-relevant operation, as the caller reports it.
type Event struct {
	Time     time.Time `json:"time"`     // when it happened; Append uses Options.Now if zero
	Node     string    `json:"node"`     // the node that recorded it; Append uses Options.Node if empty
	Actor    string    `json:"actor"`    // who acted: admin name, node name, "nodekey:…"
	Action   string    `json:"action"`   // join, leave, grant, revoke, invite, policy-change, live-view, …
	Object   string    `json:"object"`   // what it acted on
	Decision string    `json:"decision"` // Allow, Deny, or "" for plain facts
	Reason   string    `json:"reason"`   // why (the rule, grant or request that decided it)
}

// Entry is an Event as the journal holds it: numbered and chained.
type Entry struct {
	Seq uint64 `json:"seq"` // 1 for the first entry ever; rises by one
	Event
	Prev Digest `json:"prev"` // Hash of entry Seq-1 (or of the checkpoint); zero for entry 1
	Hash Digest `json:"hash"` // SHA-256 of this entry's canonical encoding (package doc)
}

// Digest is a SHA-256 hash. It encodes as 64 lowercase hex digits.
type Digest [32]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is all zero (the prev of entry 1).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) {
	return hex.AppendEncode(nil, d[:]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	if len(b) != 2*len(d) {
		return fmt.Errorf("hash is %d characters, want %d hex digits", len(b), 2*len(d))
	}
	var x Digest
	if _, err := hex.Decode(x[:], b); err != nil {
		return fmt.Errorf("hash is not hex: %v", err)
	}
	*d = x
	return nil
}

// DecodeEntry parses one journal line (with or without its newline) and
// checks that its hash matches its contents. It does not check the chain:
// that needs the entry before (see Verify).
func DecodeEntry(line []byte) (Entry, error) {
	e, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		return Entry{}, fmt.Errorf("audit: decode entry: %w", err)
	}
	if e.sum() != e.Hash {
		return Entry{}, fmt.Errorf("audit: decode entry %d: contents do not match its hash", e.Seq)
	}
	return e, nil
}

// sum computes the entry's hash from everything but Hash.
func (e *Entry) sum() Digest {
	fields := [...]string{formatTime(e.Time), e.Node, e.Actor, e.Action, e.Object, e.Decision, e.Reason}
	n := len(entryDomain) + 8 + len(e.Prev) + 8
	for _, f := range fields {
		n += 8 + len(f)
	}
	b := make([]byte, 0, n)
	b = appendField(b, entryDomain)
	b = append(b, e.Prev[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	for _, f := range fields {
		b = appendField(b, f)
	}
	return sha256.Sum256(b)
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// normalize turns a caller's event into what the journal stores: a UTC time
// (now if none) and valid, bounded text. It fails only for a time that RFC
// 3339 cannot write.
func normalize(e Event, now func() time.Time, node string) (Event, error) {
	if e.Time.IsZero() {
		e.Time = now()
	}
	e.Time = e.Time.UTC() // also drops the monotonic reading
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return Event{}, fmt.Errorf("event time %v is outside the years 0-9999", e.Time)
	}
	if e.Node == "" {
		e.Node = node
	}
	for _, p := range e.fields() {
		*p = cleanField(*p)
	}
	return e, nil
}

func (e *Event) fields() [6]*string {
	return [...]*string{&e.Node, &e.Actor, &e.Action, &e.Object, &e.Decision, &e.Reason}
}

func cleanField(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes - len(truncMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncMark
}

// wireEntry is a journal line. Its field order is the on-disk key order.
type wireEntry struct {
	Seq      uint64 `json:"seq"`
	Time     string `json:"time"`
	Node     string `json:"node"`
	Actor    string `json:"actor"`
	Action   string `json:"action"`
	Object   string `json:"object"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Prev     Digest `json:"prev"`
	Hash     Digest `json:"hash"`
}

func toWire(e Entry) wireEntry {
	return wireEntry{
		Seq: e.Seq, Time: formatTime(e.Time),
		Node: e.Node, Actor: e.Actor, Action: e.Action, Object: e.Object,
		Decision: e.Decision, Reason: e.Reason,
		Prev: e.Prev, Hash: e.Hash,
	}
}

// encodeLine returns the entry's journal line, newline included.
func encodeLine(e Entry) ([]byte, error) {
	b, err := json.Marshal(toWire(e))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxLineBytes {
		return nil, fmt.Errorf("entry %d encodes to %d bytes, over the %d-byte line limit", e.Seq, len(b), MaxLineBytes)
	}
	return append(b, '\n'), nil
}

var errNotCanonical = errors.New("not in canonical form (re-formatted or edited by hand)")

// parseLine decodes a line without its newline. It checks the syntax and
// canonical form, not the hash.
func parseLine(line []byte) (Entry, error) {
	if len(line) > MaxLineBytes {
		return Entry{}, fmt.Errorf("line is %d bytes, over the %d-byte limit", len(line), MaxLineBytes)
	}
	if len(line) == 0 {
		return Entry{}, errors.New("empty line")
	}
	var w wireEntry
	if err := decodeStrict(line, &w); err != nil {
		return Entry{}, err
	}
	if w.Seq == 0 || w.Seq > maxSeq {
		return Entry{}, fmt.Errorf("seq %d: sequence numbers run from 1 to %d", w.Seq, uint64(maxSeq))
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("time %q: %v", w.Time, err)
	}
	e := Entry{Seq: w.Seq, Prev: w.Prev, Hash: w.Hash, Event: Event{
		Time: t.UTC(), Node: w.Node, Actor: w.Actor, Action: w.Action,
		Object: w.Object, Decision: w.Decision, Reason: w.Reason,
	}}
	for _, p := range e.fields() {
		if len(*p) > MaxFieldBytes {
			return Entry{}, fmt.Errorf("a field is %d bytes, over the %d-byte limit", len(*p), MaxFieldBytes)
		}
	}
	again, err := json.Marshal(toWire(e))
	if err != nil || !bytes.Equal(again, line) {
		return Entry{}, errNotCanonical
	}
	return e, nil
}

// decodeStrict decodes exactly one JSON object with no unknown keys.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not a valid record: %v", err)
	}
	if dec.More() {
		return errors.New("not a valid record: data after the JSON object")
	}
	return nil
}

// Line is the entry's journal line, newline included: the exact bytes a
// replica keeps (DecodeEntry reads it back).
func (e Entry) Line() ([]byte, error) { return encodeLine(e) }
