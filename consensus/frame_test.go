package consensus

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []frame{
		requestFrame(kindSubmit, 3*time.Second, []byte("grant x")),
		requestFrame(kindReadIndex, time.Millisecond, nil),
		{kind: kindAccepted},
		{kind: kindOK, body: indexBody(42)},
		textFrame(kindRejected, "no"),
	} {
		var buf bytes.Buffer
		if err := writeFrame(&buf, f); err != nil {
			t.Fatalf("writeFrame(%#x): %v", byte(f.kind), err)
		}
		got, err := readFrame(&buf)
		if err != nil || got.kind != f.kind || !bytes.Equal(got.body, f.body) {
			t.Errorf("readFrame(writeFrame(%#x %q)) = %#x %q, %v", byte(f.kind), f.body, byte(got.kind), got.body, err)
		}
	}
	wait, payload, err := parseRequest(requestFrame(kindSubmit, 1500*time.Millisecond, []byte("c")))
	if err != nil || wait != 1500*time.Millisecond || string(payload) != "c" {
		t.Errorf("parseRequest = %v, %q, %v; want 1.5s, \"c\"", wait, payload, err)
	}
	if i, err := parseIndex(indexBody(7)); err != nil || i != 7 {
		t.Errorf("parseIndex = %d, %v; want 7", i, err)
	}
}

func TestReadFrameRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short header", []byte{1, 1, 0}, io.ErrUnexpectedEOF},
		{"version 2", []byte{2, 1, 0, 0, 0, 0}, errFrameVersion},
		{"unknown kind", []byte{1, 0x7f, 0, 0, 0, 0}, errFrameKind},
		{"over the cap", []byte{1, 1, 0xff, 0xff, 0xff, 0xff}, errFrameSize},
		{"just over the cap", []byte{1, 1, 0, 0x10, 0, 5}, errFrameSize},
		{"short body", []byte{1, 1, 0, 0, 0, 9, 1, 2}, io.ErrUnexpectedEOF},
	} {
		_, err := readFrame(bytes.NewReader(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: readFrame = %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := writeFrame(io.Discard, frame{kind: kindSubmit, body: make([]byte, MaxFrameBody+1)}); !errors.Is(err, errFrameSize) {
		t.Errorf("writeFrame over the cap = %v, want errFrameSize", err)
	}
}

func TestCleanText(t *testing.T) {
	got := cleanText("a\nb\x00c\xff" + strings.Repeat("é", MaxErrorText))
	if len(got) > MaxErrorText || !utf8.ValidString(got) || strings.ContainsAny(got, "\n\x00") || !strings.HasPrefix(got, "a b c?") {
		t.Errorf("cleanText = %q (%d bytes)", got[:min(len(got), 20)], len(got))
	}
}

// FuzzReadFrame: the decoder of untrusted forwarding bytes never panics,
// never returns a body over the cap, and what it accepts re-encodes to the
// bytes it read.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range []frame{
		requestFrame(kindSubmit, time.Second, []byte("cmd")),
		requestFrame(kindReadIndex, time.Second, nil),
		{kind: kindOK, body: indexBody(1)},
		textFrame(kindUnknown, "leadership lost"),
	} {
		var buf bytes.Buffer
		writeFrame(&buf, fr)
		f.Add(buf.Bytes())
	}
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 2, 0, 0, 0, 4, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		fr, err := readFrame(r)
		if err != nil {
			return
		}
		if len(fr.body) > MaxFrameBody || !fr.kind.known() {
			t.Fatalf("accepted kind %#x with %d bytes", byte(fr.kind), len(fr.body))
		}
		var buf bytes.Buffer
		if err := writeFrame(&buf, fr); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if consumed := len(in) - r.Len(); !bytes.Equal(buf.Bytes(), in[:consumed]) {
			t.Fatalf("re-encoding differs from the input")
		}
		if fr.kind.isRequest() {
			if wait, payload, err := parseRequest(fr); err == nil && (wait <= 0 || len(payload) > MaxCommand) {
				t.Fatalf("parseRequest accepted wait %v, %d bytes", wait, len(payload))
			}
		}
		parseIndex(fr.body)
	})
}
