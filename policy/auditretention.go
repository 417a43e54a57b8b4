package policy

// How long the audit journals keep their entries (DESIGN §4 invariant 8).
// Every node's journal and every datacenter's copy of it prune entries
// older than AuditKeep, the same period everywhere, read from the policy.
//
//   - audit.retention: the period and, above the default, the written
//     justification the records of processing show (as a camera's retention
//     above 72 hours needs one). Shorter than the default is refused: the
//     seed promises 30 days of operation logs. At most ten years.
//
// It is a governance change (IsGovernance): once the federation is sealed
// it takes the quorum, like changing who may approve. Shortening it erases
// the trail of what admins did, which is exactly what one admin must not
// be able to do alone; lengthening it keeps staff's personal data longer,
// a decision the quorum should see with its justification. One rule for
// both keeps the question "who changed the audit trail?" answered by the
// ledger.

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// KindSetAuditRetention sets how long audit entries are kept
// (AuditRetention).
const KindSetAuditRetention = "audit.retention"

const (
	// DefaultAuditRetention is how long audit entries are kept when the
	// policy does not say: the seed's 30 days (policy/audit's own default
	// is the same).
	DefaultAuditRetention = 30 * 24 * time.Hour
	// MaxAuditRetention is ten years, leap days included.
	MaxAuditRetention = 3653 * 24 * time.Hour
	// MinJustification is the shortest written justification of a
	// retention above its default, in characters.
	MinJustification = 20
)

// AuditRetention is the payload of audit.retention.
type AuditRetention struct {
	Retention     time.Duration `json:"retention"`
	Justification string        `json:"justification,omitempty"` // needed above DefaultAuditRetention
}

// AuditKeep is how long audit entries are kept: State.AuditRetention, or
// DefaultAuditRetention when it was never set.
func (s *State) AuditKeep() time.Duration {
	if s == nil || s.AuditRetention == 0 {
		return DefaultAuditRetention
	}
	return s.AuditRetention
}

func (s *State) planSetAuditRetention(p *AuditRetention) (func(), error) {
	if p == nil {
		return nil, errors.New("no audit retention")
	}
	switch {
	case p.Retention < DefaultAuditRetention:
		return nil, fmt.Errorf("audit retention %v is shorter than %v: the operation logs are kept at least 30 days", p.Retention, DefaultAuditRetention)
	case p.Retention > MaxAuditRetention:
		return nil, fmt.Errorf("audit retention %v is longer than ten years (%v)", p.Retention, MaxAuditRetention)
	case p.Retention > DefaultAuditRetention && utf8.RuneCountInString(p.Justification) < MinJustification:
		return nil, fmt.Errorf("audit retention %v is above the default %v and needs a written justification (at least %d characters)",
			p.Retention, DefaultAuditRetention, MinJustification)
	}
	if p.Justification != "" {
		if err := checkText("justification", p.Justification); err != nil {
			return nil, fmt.Errorf("audit retention: %w", err)
		}
	}
	r, j := p.Retention, p.Justification
	return func() { s.AuditRetention, s.AuditJustification = r, j }, nil
}
