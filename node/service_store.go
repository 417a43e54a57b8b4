package node

// Helpers the node service's ops share (replication, live view; the store
// and datacenter ops of a release are node/release's): strict decoding of
// a request body, timestamps in messages, denials, and a camera's store.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func denied(format string, a ...any) error {
	return &rpc.Error{Code: rpc.Denied, Message: fmt.Sprintf(format, a...)}
}

// strictJSON decodes one JSON value with no unknown fields.
func strictJSON(b []byte, v any) error {
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

// storeOf is the live store of camera's site.
func storeOf(st *policy.State, camera string) (string, error) {
	c := st.Cameras[camera]
	if c == nil {
		return "", fmt.Errorf("camera %s is no longer in the policy", camera)
	}
	var names []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleStore && nd.Site == c.Site && policy.Member(st, name, time.Now()) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("site %s has no live store to fetch %s from", c.Site, camera)
	}
	sort.Strings(names)
	return names[0], nil
}
