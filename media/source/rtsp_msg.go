package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// Bounds on what a camera may send us; anything larger is an error, not an
// allocation. Interleaved frames are bounded by their 16-bit length.
const (
	maxLineLen  = 4096
	maxHeaders  = 64
	maxBodyLen  = 64 << 10 // an SDP is a few hundred bytes
	rtspVersion = "RTSP/1.0"
)

// errMessage marks a malformed RTSP message from the camera.
var errMessage = errors.New("malformed RTSP message")

// message is an RTSP response, or a request the camera sent us (which we
// read to stay in sync and otherwise ignore).
type message struct {
	status  int    // 0 for a request
	reason  string // status text, or the request line for a request
	header  map[string][]string
	body    []byte
	request bool
}

// get returns the first value of a header (case-insensitive name).
func (m *message) get(name string) string {
	if v := m.header[textproto.CanonicalMIMEHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readLine reads one CRLF- or LF-terminated line of at most maxLineLen bytes.
func readLine(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxLineLen {
			return "", fmt.Errorf("%w: line longer than %d bytes", errMessage, maxLineLen)
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	return string(bytes.TrimRight(line, "\r\n")), nil
}

// readMessage reads one RTSP message (the caller has checked that the next
// byte is not '$', the start of an interleaved frame).
func readMessage(br *bufio.Reader) (*message, error) {
	first, err := readLine(br)
	if err != nil {
		return nil, err
	}
	m := &message{header: make(map[string][]string)}
	if rest, ok := strings.CutPrefix(first, rtspVersion+" "); ok {
		code, reason, _ := strings.Cut(rest, " ")
		if len(code) != 3 {
			return nil, fmt.Errorf("%w: bad status line %.40q", errMessage, first)
		}
		if m.status, err = strconv.Atoi(code); err != nil || m.status < 100 {
			return nil, fmt.Errorf("%w: bad status line %.40q", errMessage, first)
		}
		m.reason = reason
	} else if strings.HasSuffix(first, " "+rtspVersion) {
		m.request, m.reason = true, first
	} else {
		return nil, fmt.Errorf("%w: not RTSP: %.40q", errMessage, first)
	}
	for n := 0; ; n++ {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		if n == maxHeaders {
			return nil, fmt.Errorf("%w: more than %d headers", errMessage, maxHeaders)
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: bad header line %.40q", errMessage, line)
		}
		k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
		m.header[k] = append(m.header[k], strings.TrimSpace(v))
	}
	if cl := m.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > maxBodyLen {
			return nil, fmt.Errorf("%w: Content-Length %.20q (limit %d)", errMessage, cl, maxBodyLen)
		}
		m.body = make([]byte, n)
		if _, err := io.ReadFull(br, m.body); err != nil {
			return nil, fmt.Errorf("reading body: %w", err)
		}
	}
	return m, nil
}

// readInterleaved reads one "$ channel length payload" frame (RFC 2326
// 10.12). buf is reused when large enough; the result aliases it.
func readInterleaved(br *bufio.Reader, buf []byte) (channel byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[0] != '$' {
		return 0, nil, fmt.Errorf("%w: interleaved frame starts with %#x, not '$'", errMessage, hdr[0])
	}
	n := int(hdr[2])<<8 | int(hdr[3])
	if cap(buf) < n {
		buf = make([]byte, n, max(n, 2048))
	}
	payload = buf[:n]
	if _, err := io.ReadFull(br, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[1], payload, nil
}

// writeRequest formats one request. Header values come from us, never
// from the camera, so they need no escaping beyond refusing line breaks.
func formatRequest(method, uri string, cseq int, hdr [][2]string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\nCSeq: %d\r\nUser-Agent: Custos\r\n", method, uri, rtspVersion, cseq)
	for _, h := range hdr {
		if strings.ContainsAny(h[0]+h[1], "\r\n") {
			return nil, fmt.Errorf("header %s contains a line break", h[0])
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	if strings.ContainsAny(uri, " \r\n") {
		return nil, fmt.Errorf("request URI contains white space")
	}
	return b.Bytes(), nil
}
