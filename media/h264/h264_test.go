package h264

import (
	"bytes"
	"testing"
)

func TestSplitJoinNALs(t *testing.T) {
	sps, pps, idr := []byte{0x67, 1, 2}, []byte{0x68, 3}, []byte{0x65, 0, 0, 2, 9}
	au := JoinNALs(sps, pps, idr)
	got := SplitNALs(au)
	if len(got) != 3 || !bytes.Equal(got[0], sps) || !bytes.Equal(got[1], pps) || !bytes.Equal(got[2], idr) {
		t.Fatalf("SplitNALs(JoinNALs) = %x", got)
	}
	if !IsKey(au) || IsKey(JoinNALs([]byte{0x41, 7})) {
		t.Fatal("IsKey is wrong")
	}
	// Three-byte start codes, a leading zero byte, and empty input.
	three := []byte{0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2}
	if got := SplitNALs(three); len(got) != 2 || Type(got[0]) != NALSPS || Type(got[1]) != NALPPS {
		t.Fatalf("three-byte start codes: %x", got)
	}
	if got := SplitNALs(nil); len(got) != 0 {
		t.Fatalf("SplitNALs(nil) = %x", got)
	}
	if got := SplitNALs([]byte{1, 2, 3}); len(got) != 0 {
		t.Fatalf("no start code: %x", got)
	}
	if Type(nil) != 0 {
		t.Fatal("Type(nil) != 0")
	}
}
