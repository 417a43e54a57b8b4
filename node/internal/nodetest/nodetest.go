// Package nodetest holds the helpers that node's tests and its demo (which,
// like a test, runs whole federations on 127.0.0.1) share: the
// goroutine-leak check (naming the goroutines the libraries keep for
// themselves: memberlist's probe, gVisor's parked workers), bounded waits
// that fail naming what they waited for, and free loopback ports. Nothing
// a running node uses.
package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// CheckLeaks registers the leak check as a cleanup of t.
func CheckLeaks(t testing.TB) {
	t.Cleanup(func() {
		goleak.VerifyNone(t,
			goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
			goleak.IgnoreTopFunction("gvisor.dev/gvisor/pkg/sync.Gopark"),
		)
	})
}

// WaitTrue polls cond until it holds, failing t after d naming what.
func WaitTrue(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitCond polls cond until it holds, ctx ends or d passes.
func WaitCond(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// FreeUDPPort returns a loopback port that is free for UDP and TCP alike
// (a datacenter serves its relay and join service on TCP at its WireGuard
// UDP port), chosen below the kernel's ephemeral range (32768 and up by
// default), so that no outgoing connection of another test takes it
// between this check and the node's bind.
func FreeUDPPort() (uint16, error) {
	lo := net.IPv4(127, 0, 0, 1)
	for range 200 {
		p := 20000 + rand.IntN(12000)
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo, Port: p})
		if err != nil {
			continue
		}
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: lo, Port: p})
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return uint16(p), nil
	}
	return 0, errors.New("nodetest: no loopback port free for both UDP and TCP in 20000-31999")
}

// TSPackets counts runs of five MPEG-TS sync bytes 188 bytes apart: the
// sign of plaintext MPEG-TS that encrypted footage must never show.
func TSPackets(b []byte) int {
	n := 0
	for i := 0; i+4*188 < len(b); i++ {
		if b[i] == 0x47 && b[i+188] == 0x47 && b[i+2*188] == 0x47 && b[i+3*188] == 0x47 && b[i+4*188] == 0x47 {
			n++
		}
	}
	return n
}

// RoundTrip checks a wire type against bytes a fuzzer made: if decode
// accepts b into v, v encodes to JSON that decodes into again and encodes
// the same, so every accepted value has one reading.
func RoundTrip(t testing.TB, b []byte, v, again any, decode func([]byte, any) error) {
	t.Helper()
	if decode(b, v) != nil {
		return
	}
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%T decoded but does not encode: %v", v, err)
	}
	if err := decode(enc, again); err != nil {
		t.Fatalf("%T: its encoding %s does not decode: %v", v, enc, err)
	}
	if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
		t.Fatalf("%T: %s became %s", v, enc, enc2)
	}
}
