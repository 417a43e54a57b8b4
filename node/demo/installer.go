package demo

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// installerWindow is how long the installer may stay. The window must
// outlast the join itself, which takes seconds on a loaded machine (a window
// that ends first admits no one); replication and live view are shown while
// it runs.
const installerWindow = 25 * time.Second

// installerJoins has an installer join praha-1 for installerWindow and
// shows whom it peers with and what the policy lets it do. The returned
// watcher times its drop from the window's end while the demo goes on; the
// caller stops it.
func (f *federation) installerJoins() (*dropWatch, error) {
	f.say("\n== An installer joins praha-1 for %v", installerWindow)
	end := time.Now().Add(installerWindow)
	if _, err := f.joinAs("installer-jan", policy.RoleInstaller, "praha-1", policy.Window{Until: end}); err != nil {
		return nil, err
	}
	inst := f.nodes["installer-jan"].Mesh().Addr()
	peerOf := func(n string) bool { _, ok := f.nodes[n].Mesh().PeerByAddr(inst); return ok }
	// The drop is timed from the window's end while the demo goes on with
	// replication and live view.
	drop := watchDrop(end, inst, f.nodes["store-praha-1"].Mesh(), f.nodes["dc-a"].Mesh())
	f.say("   peer of store-praha-1: %v, of store-brno-1: %v (stores see only their own site's installers)", peerOf("store-praha-1"), peerOf("store-brno-1"))
	for _, q := range []struct {
		act policy.Action
		cam string
	}{{policy.ActLive, "praha-1/entrance"}, {policy.ActPlayback, "praha-1/entrance"}, {policy.ActLive, "brno-1/door"}} {
		d := policy.Authorize(f.nodes["store-praha-1"].Policy(), policy.Subject{Kind: "node", Name: "installer-jan"}, q.act, q.cam, time.Now())
		verdict := "denied"
		if d.Allow {
			verdict = "allowed"
		}
		f.say("   installer %-8s %-17s %s: %s", q.act, q.cam, verdict, d.Reason)
	}
	return drop, nil
}

// installerEnds waits for the watcher's verdict: every node drops the
// installer by its own clock, with no command sent at the window's end.
func (f *federation) installerEnds(w *dropWatch) error {
	f.say("\n== The installer's window ends")
	var d drop
	select {
	case d = <-w.dropped:
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
	if d.err != nil {
		return fmt.Errorf("installer: %w", d.err)
	}
	f.say("   dropped by store-praha-1 and dc-a %v after its end, by their own clocks", d.after.Round(time.Millisecond))
	return nil
}

// drop is the watcher's verdict: how long after the window's end the
// installer stopped being a peer, or why it did not.
type drop struct {
	after time.Duration
	err   error
}

// dropWatch polls, from the end of a window, until no mesh it watches
// keeps the address as a peer, and reports once on dropped.
type dropWatch struct {
	dropped chan drop
	quit    chan struct{}
}

// watchDrop starts watching the meshes for addr from end on; it gives up
// 5 s after end.
func watchDrop(end time.Time, addr netip.Addr, meshes ...*mesh.Mesh) *dropWatch {
	w := &dropWatch{dropped: make(chan drop, 1), quit: make(chan struct{})}
	go w.run(end, addr, meshes)
	return w
}

// stop ends the watch if it still runs.
func (w *dropWatch) stop() { close(w.quit) }

func (w *dropWatch) run(end time.Time, addr netip.Addr, meshes []*mesh.Mesh) {
	select {
	case <-time.After(time.Until(end)):
	case <-w.quit:
		return
	}
	for {
		peer := false
		for _, m := range meshes {
			_, ok := m.PeerByAddr(addr)
			peer = peer || ok
		}
		if !peer {
			w.dropped <- drop{after: time.Since(end)}
			return
		}
		if time.Since(end) > 5*time.Second {
			w.dropped <- drop{err: fmt.Errorf("still a peer %v after its window", time.Since(end).Round(time.Millisecond))}
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-w.quit:
			return
		}
	}
}
