// Package rpc owns node-to-node requests over the mesh's authenticated
// QUIC (mesh.ListenQUIC, mesh.DialQUIC), for key release, export,
// replication and live view. The connection already names the peer
// (QUICConn.PeerKey); every handler gets that key and decides what it may
// have. An op nobody registered is refused.
//
// One request per stream. All integers are big-endian; lengths are fixed
// 4-byte (2-byte for the status message) rather than uvarints, so that each
// value has exactly one encoding and a bound can be checked before anything
// is allocated.
//
//	request  (client → server, then the client closes its side)
//	  version  uint8     1; anything else is answered with BadVersion
//	  oplen    uint8     1..maxOp
//	  op       [oplen]   lowercase letters, digits, '-' and '.'
//	  bodylen  uint32    0..maxBody (64 KiB)
//	  body     [bodylen] JSON (empty: no arguments)
//
//	status   (server → client, first)
//	  version  uint8     1
//	  code     uint8     OK or an error code
//	  msglen   uint16    0..maxMessage (1 KiB)
//	  message  [msglen]  UTF-8, for humans; empty when OK
//
//	data     (server → client, after an OK status only, any number)
//	  len      uint32    1..maxData (16 MiB)
//	  payload  [len]
//	end      uint32 0, then the server closes the stream
//
// An error status is the whole response. A response cut short (a handler
// that fails after sending data, a deadline, shutdown) is a stream reset,
// never a clean end, so a reader can always tell a complete answer.
//
// Deadlines: the request must arrive within requestTimeout; every write of
// the response must make progress within writeTimeout (bulk responses may
// run for hours, so there is no total limit: a handler bounds its own work
// with ctx). At most maxStreams handlers run per connection, and
// maxPeerStreams over all of one peer's connections; further streams wait
// in QUIC's own stream limit (mesh.QUICConfig.MaxStreams). A peer may hold
// maxPeerConns connections at once; one more is closed with
// connTooMany. A peer is authenticated, not trusted: these bounds keep
// one compromised or broken node from growing another's memory without
// bound (DESIGN §4 invariant 14).
//
// It knows frames, limits and deadlines, never what an op means: handlers
// decide who may have what, and rpc imports nothing of the node.
package rpc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/quic-go/quic-go"
)

const (
	protoVersion = 1
	maxOp        = 32
	maxBody      = 64 << 10
	maxMessage   = 1 << 10
	maxData      = 16 << 20

	defaultRequestTimeout = 10 * time.Second
	defaultWriteTimeout   = 30 * time.Second
	defaultMaxStreams     = 16
	// A datacenter opens the most connections to one node: its
	// replication lanes (4 by default), exports and live views.
	defaultMaxPeerConns   = 32
	defaultMaxPeerStreams = 64
	// MaxFramesBytes bounds what ReadFrames collects in memory from one
	// response, MaxFrames how many frames.
	MaxFramesBytes = 64 << 20
	MaxFrames      = 1 << 16
	// writeChunk is how much of a data frame is written per write
	// deadline, so that the deadline measures progress, not frame size.
	writeChunk = 64 << 10
)

// Code is a status code.
type Code uint8

const (
	OK          Code = 0
	BadRequest  Code = 1 // malformed, oversize or late request
	BadVersion  Code = 2 // the message says which version we speak
	UnknownOp   Code = 3
	Denied      Code = 4 // the peer may not have this
	Failed      Code = 5 // the handler failed; the message says why
	Unavailable Code = 6 // the server is shutting down
)

func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case BadRequest:
		return "bad request"
	case BadVersion:
		return "unsupported version"
	case UnknownOp:
		return "unknown op"
	case Denied:
		return "denied"
	case Failed:
		return "failed"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Stream reset codes: why a response ended without its end frame.
const (
	resetFailed   quic.StreamErrorCode = 1 // the handler failed mid-response
	resetDeadline quic.StreamErrorCode = 2 // a write made no progress in time
	resetShutdown quic.StreamErrorCode = 3 // the server is closing
	resetCanceled quic.StreamErrorCode = 4 // the client gave up

	// connShutdown closes the connections of a closing server.
	connShutdown quic.ApplicationErrorCode = 0x100
	// connTooMany closes a connection over the peer's limit.
	connTooMany quic.ApplicationErrorCode = 0x101
)

// Error is a non-OK status. Handlers return one to choose the code;
// any other error becomes Failed with the error's text, which therefore
// must say what a remote node may know and nothing secret.
type Error struct {
	Code    Code
	Message string
}

// Error is the message, which says what happened in a sentence of its own.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Message
}

// request is a decoded request frame.
type request struct {
	Op   string
	Body []byte
}

var (
	errVersion  = errors.New("unsupported rpc version")
	errTooLarge = errors.New("frame too large")
)

// validOp reports whether op may be sent: 1..maxOp of [a-z0-9.-].
func validOp(op string) bool {
	if len(op) == 0 || len(op) > maxOp {
		return false
	}
	for i := range len(op) {
		c := op[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// encodeRequestFrame checks req as the server will and encodes it.
func encodeRequestFrame(req request) ([]byte, error) {
	if !validOp(req.Op) {
		return nil, fmt.Errorf("op %q is not 1..%d of [a-z0-9.-]", req.Op, maxOp)
	}
	if len(req.Body) > maxBody {
		return nil, fmt.Errorf("body of %d bytes: %w (max %d)", len(req.Body), errTooLarge, maxBody)
	}
	if len(req.Body) > 0 && !json.Valid(req.Body) {
		return nil, errors.New("body is not JSON")
	}
	b := make([]byte, 0, 2+len(req.Op)+4+len(req.Body))
	b = append(b, protoVersion, byte(len(req.Op)))
	b = append(b, req.Op...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(req.Body)))
	return append(b, req.Body...), nil
}

// readRequestFrame decodes one request. An unknown version is reported
// (errVersion) after reading only the version byte.
func readRequestFrame(r io.Reader) (request, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:1]); err != nil {
		return request{}, err
	}
	if hdr[0] != protoVersion {
		return request{}, fmt.Errorf("%w %d", errVersion, hdr[0])
	}
	if _, err := io.ReadFull(r, hdr[1:]); err != nil {
		return request{}, NoEOF(err)
	}
	if n := int(hdr[1]); n == 0 || n > maxOp {
		return request{}, fmt.Errorf("op length %d out of 1..%d", n, maxOp)
	}
	op := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, op); err != nil {
		return request{}, NoEOF(err)
	}
	if !validOp(string(op)) {
		return request{}, errors.New("op is not [a-z0-9.-]")
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return request{}, NoEOF(err)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > maxBody {
		return request{}, fmt.Errorf("body of %d bytes: %w (max %d)", n, errTooLarge, maxBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return request{}, NoEOF(err)
	}
	if n > 0 && !json.Valid(body) {
		return request{}, errors.New("body is not JSON")
	}
	return request{Op: string(op), Body: body}, nil
}

func writeStatusFrame(w io.Writer, code Code, msg string) error {
	msg = clipMessage(msg)
	b := make([]byte, 0, 4+len(msg))
	b = append(b, protoVersion, byte(code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// readStatusFrame decodes a status; a non-OK one is returned as *Error.
func readStatusFrame(r io.Reader) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return NoEOF(err)
	}
	if hdr[0] != protoVersion {
		return fmt.Errorf("status: %w %d", errVersion, hdr[0])
	}
	n := binary.BigEndian.Uint16(hdr[2:])
	if n > maxMessage {
		return fmt.Errorf("status message of %d bytes: %w (max %d)", n, errTooLarge, maxMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return NoEOF(err)
	}
	if !utf8.Valid(msg) {
		return errors.New("status message is not UTF-8")
	}
	code := Code(hdr[1])
	if code == OK {
		if n != 0 {
			return errors.New("OK status with a message")
		}
		return nil
	}
	return &Error{Code: code, Message: string(msg)}
}

// readDataHeader returns the length of the next data frame; 0 is the end.
func readDataHeader(r io.Reader) (int, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return 0, NoEOF(err)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > maxData {
		return 0, fmt.Errorf("data frame of %d bytes: %w (max %d)", n, errTooLarge, maxData)
	}
	return int(n), nil
}

// readDataFrame reads one whole data frame; (nil, io.EOF) is the end frame.
func readDataFrame(r io.Reader) ([]byte, error) {
	n, err := readDataHeader(r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, NoEOF(err)
	}
	return p, nil
}

// NoEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func NoEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clipMessage makes msg valid UTF-8 of at most maxMessage bytes.
func clipMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) <= maxMessage {
		return msg
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}
