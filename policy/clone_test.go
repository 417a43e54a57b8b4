package policy

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// fill sets every field reachable from v to a non-zero value, maps and
// slices with one element, so that a Clone that forgets a field shows.
func fill(v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type() == reflect.TypeFor[*time.Location]() {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), depth+1)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(t0))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth+1)
			}
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint8, reflect.Uint64:
		v.SetUint(7)
	}
}

// shared reports the first path at which a and b hold the same slice, map or
// pointer.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() && a.Type() != reflect.TypeFor[*time.Location]() {
			return path
		}
		return shared(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() {
				if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
					return p
				}
			}
		}
	case reflect.Map:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for _, k := range a.MapKeys() {
			if p := shared(a.MapIndex(k), b.MapIndex(k), path+"["+k.String()+"]"); p != "" {
				return p
			}
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return path
		}
		for i := range a.Len() {
			if p := shared(a.Index(i), b.Index(i), path+"[]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// Every field of the state, present and future, is copied: a field added
// to State or to any of its values without a deep copy in Clone fails here.
func TestCloneSharesNothing(t *testing.T) {
	var s State
	fill(reflect.ValueOf(&s).Elem(), 0)
	c := s.Clone()
	if p := shared(reflect.ValueOf(&s).Elem(), reflect.ValueOf(c).Elem(), "State"); p != "" {
		t.Fatalf("Clone shares %s with the original", p)
	}
	a, _ := s.Marshal()
	b, _ := c.Marshal()
	if !bytes.Equal(a, b) {
		t.Fatalf("clone differs:\n%s\n%s", a, b)
	}
	if (*State)(nil).Clone() != nil {
		t.Fatal("nil.Clone() is not nil")
	}
}

// Successor copies as Clone does but for the values of Sites and Cameras,
// which it shares (Apply only replaces them): nothing else is shared.
func TestSuccessorSharesOnlySitesAndCameras(t *testing.T) {
	var s State
	fill(reflect.ValueOf(&s).Elem(), 0)
	c := s.Successor()
	a, _ := s.Marshal()
	b, _ := c.Marshal()
	if !bytes.Equal(a, b) {
		t.Fatalf("successor differs:\n%s\n%s", a, b)
	}
	if reflect.ValueOf(c.Sites).Pointer() == reflect.ValueOf(s.Sites).Pointer() ||
		reflect.ValueOf(c.Cameras).Pointer() == reflect.ValueOf(s.Cameras).Pointer() {
		t.Fatal("Successor shares the Sites or Cameras map itself")
	}
	c.Sites, c.Cameras = s.Clone().Sites, s.Clone().Cameras
	if p := shared(reflect.ValueOf(&s).Elem(), reflect.ValueOf(c).Elem(), "State"); p != "" {
		t.Fatalf("Successor shares %s with the original", p)
	}
	if (*State)(nil).Successor() != nil {
		t.Fatal("nil.Successor() is not nil")
	}
}

// Sites and cameras added, a camera removed, on successors: the original
// state does not change.
func TestSuccessorApplyLeavesOriginal(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	c := cmd(KindAddSite, t0)
	c.Site = &Site{Name: "brno-1", Jurisdiction: "EU"}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindAddCamera, t0)
	c.Camera = &Camera{Site: "brno-1", Name: "gate", Purpose: "theft prevention", LegalBasis: "art. 6(1)(f)", Retention: DefaultRetention, Tags: []string{"doors"}}
	mustApply(t, s, alice.sign(t, c))
	c = cmd(KindRemoveCamera, t0)
	c.Name = "brno-1/gate"
	mustApply(t, s, alice.sign(t, c))
	if s.Cameras["brno-1/gate"] != nil || s.Sites["brno-1"] == nil {
		t.Fatal("the successor's changes were lost")
	}
}

// record skips its scan of Seen while no entry can have left the replay
// window; Seen still holds exactly the commands within it, with commands
// applied out of time order, and a state read from JSON (no floor kept)
// goes on alike.
func TestSeenPrunedAsByScan(t *testing.T) {
	alice := newTestUser(t, "alice")
	s := founded(t, alice)
	times := map[string]time.Time{}
	for id, at := range s.Seen {
		times[id] = at
	}
	offsets := []time.Duration{0, 2, 1, 13, 25, 24, 26, 30, 49, 48, 50, 80, 60, 85}
	for i, h := range offsets {
		c := cmd(KindAddSite, t0.Add(h*time.Hour))
		c.Site = &Site{Name: fmt.Sprintf("s-%d", i), Jurisdiction: "EU"}
		if _, err := s.Apply(alice.sign(t, c)); err != nil {
			continue // older than the window: refused
		}
		times[c.ID] = c.Time
		want := map[string]bool{}
		for id, at := range times {
			if !at.Before(s.Clock.Add(-ReplayWindow)) {
				want[id] = true
			}
		}
		got := map[string]bool{}
		for id := range s.Seen {
			got[id] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s: Seen %v, want %v", c.ID, got, want)
		}
		if i == len(offsets)/2 {
			b, _ := s.Marshal()
			var r State
			if err := r.Unmarshal(b); err != nil {
				t.Fatal(err)
			}
			s = &r
		}
	}
}
