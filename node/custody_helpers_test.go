package node

import "github.com/custos-cctv/custos/keys"

// sealedRecord is the epoch record inside a stored, sealed one.
func sealedRecord(b []byte) (*keys.EpochRecord, error) {
	e, err := keys.ParseSealedEpoch(b)
	if err != nil {
		return nil, err
	}
	return e.Record, nil
}

// innerCiphertext is the OpenPGP message inside a stored, sealed segment,
// for a store read: innerCiphertext(st.ReadSegment(m)).
func innerCiphertext(b []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	g, err := keys.ParseSealedSegment(b)
	if err != nil {
		return nil, err
	}
	return g.Ciphertext, nil
}
