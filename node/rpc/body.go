package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// DecodeStrict decodes one JSON value with no unknown fields and nothing
// after it: request bodies and answers come from authenticated peers, not
// trusted ones, so a value has one reading or none.
func DecodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Deny is a Denied status whose message says why, for the caller to read.
func Deny(format string, a ...any) error {
	return &Error{Code: Denied, Message: fmt.Sprintf(format, a...)}
}
