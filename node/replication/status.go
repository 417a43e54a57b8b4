package replication

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// Status is one camera's replication to one datacenter, as a store sees
// it.
type Status struct {
	Camera     string `json:"camera"`
	Datacenter string `json:"datacenter"`
	// State: caught-up, behind, waiting (no pull yet), unreachable (no
	// pull for 30 s) or refused (the policy keeps data elsewhere).
	State       string    `json:"state"`
	UpTo        time.Time `json:"replicated_up_to,omitzero"` // end of the newest segment acknowledged
	LagSeconds  float64   `json:"lag_seconds"`               // newest local segment's end − UpTo
	LagBytes    int64     `json:"lag_bytes"`                 // ciphertext not yet acknowledged
	LagSegments int       `json:"lag_segments"`
	LastPull    time.Time `json:"last_pull,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// Status reports every camera the store holds against every datacenter
// of the policy.
func (r *Source) Status() []Status {
	st := r.d.Policy.State()
	site := r.selfSite(st)
	s := r.d.Media()
	cams, err := s.Cameras()
	if err != nil {
		return []Status{{State: "error", Error: err.Error()}}
	}
	var dcs []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleDatacenter && !nd.Revoked {
			dcs = append(dcs, name)
		}
	}
	sort.Strings(dcs)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue
		}
		newest, ok, _, _, err := s.Newest(cam)
		if err != nil {
			out = append(out, Status{Camera: cam, State: "error", Error: err.Error()})
			continue
		}
		for _, dc := range dcs {
			rs := Status{Camera: cam, Datacenter: dc, LastPull: r.lastAck[dc]}
			if err := policy.ReplicaTarget(st, dc, now); err != nil {
				rs.State, rs.Error = "refused", err.Error()
				out = append(out, rs)
				continue
			}
			// Only what follows the acknowledged segment is read, so the
			// cost is the lag, not the store.
			held := r.acks[dc][cam]
			pending, err := s.Segments(cam, after(held.Segment), farFuture)
			if err != nil {
				rs.State, rs.Error = "error", err.Error()
				out = append(out, rs)
				continue
			}
			var first time.Time
			for _, m := range pending {
				if !held.Segment.IsZero() && !m.Start.After(held.Segment) {
					if m.Start.Equal(held.Segment) {
						rs.UpTo = m.End
					}
					continue
				}
				if first.IsZero() {
					first = m.Start
				}
				rs.LagSegments++
				rs.LagBytes += m.Size
			}
			if ok && rs.LagSegments > 0 {
				rs.LagSeconds = newest.End.Sub(cmp.Or(rs.UpTo, first)).Seconds()
			}
			switch {
			case rs.LastPull.IsZero():
				rs.State = "waiting"
			case now.Sub(rs.LastPull) > replStaleAfter:
				rs.State = "unreachable"
				rs.Error = fmt.Sprintf("no pull for %s", now.Sub(rs.LastPull).Round(time.Second))
			case rs.LagSegments == 0:
				rs.State = "caught-up"
			default:
				rs.State = "behind"
			}
			out = append(out, rs)
		}
	}
	return out
}

// ReplicaStatus is one store's replica on a datacenter.
type ReplicaStatus struct {
	Store    string    `json:"store"`
	State    string    `json:"state"` // pulling, unreachable; revoked or no member (pulled no more, held until retention)
	LastPull time.Time `json:"last_pull,omitzero"`
	Error    string    `json:"error,omitempty"`
	AuditSeq uint64    `json:"audit_seq"` // the store's audit entries held, up to
	// AuditAlarm says why the store's journal no longer chains onto the
	// copy held (rewritten); footage is still pulled.
	AuditAlarm string `json:"audit_alarm,omitempty"`
	// Refused counts footage from the store whose seal did not verify
	// (not stored); RefusedLast says why the last one was refused.
	Refused     uint64          `json:"refused,omitempty"`
	RefusedLast string          `json:"refused_last,omitempty"`
	Cameras     []ReplicaCamera `json:"cameras"`
}

// ReplicaCamera is what a datacenter holds of one camera.
type ReplicaCamera struct {
	Camera   string    `json:"camera"`
	Segments int       `json:"segments"`
	Bytes    int64     `json:"bytes"`
	Newest   time.Time `json:"newest,omitzero"` // end of the newest segment held
}

// Status reports each store the datacenter keeps a replica of: those it
// pulls from, and those it no longer pulls from (revoked, or their window
// over) while it holds their site's footage, so that nobody takes footage
// kept for retention and exports for lost.
func (r *Replicas) Status() []ReplicaStatus {
	r.mu.Lock()
	ps := make([]*puller, 0, len(r.pullers))
	for _, p := range r.pullers {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].store < ps[j].store })
	cams, _ := r.st.Cameras()
	var out []ReplicaStatus
	stores, sites := map[string]bool{}, map[string]bool{} // pulled from
	for _, p := range ps {
		stores[p.store], sites[p.site] = true, true
		p.mu.Lock()
		rs := ReplicaStatus{Store: p.store, LastPull: p.lastPull, Error: p.err, AuditSeq: p.audit.seq(), AuditAlarm: p.auditFlag,
			Refused: p.refusedCount, RefusedLast: p.lastRefusal}
		p.mu.Unlock()
		rs.State = "pulling"
		if time.Since(rs.LastPull) > replStaleAfter {
			rs.State = "unreachable"
		}
		rs.Cameras = r.heldOf(cams, p.site)
		out = append(out, rs)
	}
	return append(out, r.formerStores(cams, stores, sites)...)
}

// formerStores are the stores of the policy pulled from no more whose site
// no other store is pulled for, with what is held of their cameras.
func (r *Replicas) formerStores(cams []string, stores, sites map[string]bool) []ReplicaStatus {
	st := r.d.Policy.State()
	if st == nil {
		return nil
	}
	var names []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleStore && nd.Site != "" && !stores[name] && !sites[nd.Site] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []ReplicaStatus
	for _, name := range names {
		nd := st.Nodes[name]
		rs := ReplicaStatus{Store: name, State: "no member", Cameras: r.heldOf(cams, nd.Site)}
		if nd.Revoked {
			rs.State = "revoked"
		}
		if len(rs.Cameras) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// heldOf is what the replica holds of site's cameras.
func (r *Replicas) heldOf(cams []string, site string) []ReplicaCamera {
	var out []ReplicaCamera
	for _, cam := range cams {
		if !strings.HasPrefix(cam, site+"/") {
			continue
		}
		s, err := r.st.Stats(cam)
		if err != nil {
			continue
		}
		out = append(out, ReplicaCamera{Camera: cam, Segments: s.Segments, Bytes: s.Bytes, Newest: s.Newest})
	}
	return out
}
