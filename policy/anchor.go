package policy

import "fmt"

// The genesis anchor a node accepts, and the result a submitter gets back.

// Anchor pins the genesis a node will accept.
type Anchor struct {
	Federation string `json:"federation"`
	AdminFP    string `json:"admin_fingerprint"`
	NodeKey    string `json:"founder_key"`
}

// Check refuses a genesis other than the one the anchor pins; any other
// command, and any genesis when a is nil, passes.
func (a *Anchor) Check(env Envelope) error {
	if a == nil {
		return nil
	}
	c, err := DecodeCommand(env.Body)
	if err != nil || c.Kind != KindGenesis || c.Genesis == nil {
		return nil
	}
	g := c.Genesis
	if g.Federation != a.Federation || g.Admin.Fingerprint != a.AdminFP || g.Node.PublicKey != a.NodeKey {
		return fmt.Errorf("genesis of federation %q by admin %s does not match this node's anchor (federation %q, admin %s)",
			g.Federation, g.Admin.Fingerprint, a.Federation, a.AdminFP)
	}
	return nil
}

// FederationID is the FederationID the anchor names.
func (a *Anchor) FederationID() string {
	return FederationID(a.Federation, a.AdminFP, a.NodeKey)
}

// ApplyResult is what Apply returns to the submitter, JSON-encoded.
type ApplyResult struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Applied bool   `json:"applied"`
	Reason  string `json:"reason,omitempty"`
}
