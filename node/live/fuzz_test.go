package live

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseLiveFrame: a live stream's frames come from the store over the
// network; any bytes give a frame, an end or an error, never a panic, and a
// frame is never empty.
func FuzzParseLiveFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, liveKey, 0, 0, 0, 1, 0x65})
	f.Add(append([]byte{0, 0, 0, 0, 0, 0, 0, 0, liveEnd}, "grant revoked"...))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, liveKey | liveH265, 0, 0, 0, 1, 0x26, 1})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseLiveFrame(b)
		switch {
		case err != nil:
			if m.Ended != "" || m.UDP != 0 || m.Frame.Data != nil {
				t.Fatalf("an error with a result: %+v", m)
			}
		case m.Ended != "":
			if !utf8.ValidString(m.Ended) {
				t.Fatalf("end reason is not UTF-8: %q", m.Ended)
			}
		case m.UDP != 0:
			if m.Frame.Data != nil {
				t.Fatal("a port and a frame")
			}
		case len(m.Frame.Data) == 0:
			t.Fatal("an empty frame")
		}
	})
}
