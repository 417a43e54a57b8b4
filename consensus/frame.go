package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// The forwarding protocol; doc.go describes it.

// The first byte of a conn: which protocol follows.
const (
	protoRaft    byte = 'R'
	protoForward byte = 'F'
)

const (
	frameVersion    byte = 1
	frameHeaderSize int  = 6
)

type frameKind byte

const (
	kindSubmit    frameKind = 0x01
	kindReadIndex frameKind = 0x02

	kindAccepted frameKind = 0x80
	kindOK       frameKind = 0x81
	kindRejected frameKind = 0x82
	kindRetry    frameKind = 0x83
	kindUnknown  frameKind = 0x84
	kindInvalid  frameKind = 0x85
)

func (k frameKind) known() bool {
	switch k {
	case kindSubmit, kindReadIndex, kindAccepted, kindOK, kindRejected, kindRetry, kindUnknown, kindInvalid:
		return true
	}
	return false
}

func (k frameKind) isRequest() bool { return k < 0x80 }

type frame struct {
	kind frameKind
	body []byte
}

var (
	errFrameVersion = errors.New("unsupported frame version")
	errFrameKind    = errors.New("unknown frame kind")
	errFrameSize    = errors.New("frame body over the size cap")
	errFrameBody    = errors.New("malformed frame body")
)

// writeFrame writes f to w in one Write.
func writeFrame(w io.Writer, f frame) error {
	if len(f.body) > MaxFrameBody {
		return errFrameSize
	}
	if !f.kind.known() {
		return errFrameKind
	}
	b := make([]byte, frameHeaderSize+len(f.body))
	b[0] = frameVersion
	b[1] = byte(f.kind)
	binary.BigEndian.PutUint32(b[2:6], uint32(len(f.body)))
	copy(b[frameHeaderSize:], f.body)
	_, err := w.Write(b)
	return err
}

// readFrame reads one frame from r. It checks the version, the kind and the
// size cap before it allocates the body. io.EOF means r ended cleanly before
// a frame began.
func readFrame(r io.Reader) (frame, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	if h[0] != frameVersion {
		return frame{}, fmt.Errorf("%w %d", errFrameVersion, h[0])
	}
	k := frameKind(h[1])
	if !k.known() {
		return frame{}, fmt.Errorf("%w %#x", errFrameKind, h[1])
	}
	n := binary.BigEndian.Uint32(h[2:6])
	if n > MaxFrameBody {
		return frame{}, fmt.Errorf("%w: %d bytes", errFrameSize, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return frame{kind: k, body: body}, nil
}

// A request body starts with the time the requester will wait, in ms.

func requestFrame(kind frameKind, timeout time.Duration, payload []byte) frame {
	ms := timeout.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if ms > 1<<32-1 {
		ms = 1<<32 - 1
	}
	body := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(body, uint32(ms))
	copy(body[4:], payload)
	return frame{kind: kind, body: body}
}

// parseRequest splits a request frame's body into its timeout and payload.
func parseRequest(f frame) (timeout time.Duration, payload []byte, err error) {
	if !f.kind.isRequest() {
		return 0, nil, fmt.Errorf("%w: %#x is not a request", errFrameKind, byte(f.kind))
	}
	if len(f.body) < 4 {
		return 0, nil, fmt.Errorf("%w: %d bytes, want at least 4", errFrameBody, len(f.body))
	}
	ms := binary.BigEndian.Uint32(f.body)
	if ms == 0 {
		return 0, nil, fmt.Errorf("%w: zero timeout", errFrameBody)
	}
	payload = f.body[4:]
	if f.kind == kindReadIndex && len(payload) != 0 {
		return 0, nil, fmt.Errorf("%w: readIndex carries %d bytes, want 0", errFrameBody, len(payload))
	}
	return time.Duration(ms) * time.Millisecond, payload, nil
}

func indexBody(index uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, index)
}

func parseIndex(body []byte) (uint64, error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: index of %d bytes, want 8", errFrameBody, len(body))
	}
	return binary.BigEndian.Uint64(body), nil
}

// textFrame makes a response frame carrying an error text, capped and made
// valid UTF-8.
func textFrame(kind frameKind, text string) frame {
	return frame{kind: kind, body: []byte(cleanText(text))}
}

// cleanText caps s at MaxErrorText bytes of valid UTF-8 without control
// characters, so a peer's text is safe to log and show.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxErrorText {
		s = s[:MaxErrorText]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
