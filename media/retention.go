package media

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-cctv/custos/media/store"
)

// Retain deletes camera's footage that is past retention at now: the
// segments that ended before now-retention, then the epoch records that
// ended before it and that no remaining segment needs (the store decides,
// see store.DeleteBefore). The Deleted it returns is what the audit
// journal records; on an error it still says what was removed.
//
// A zero or negative retention is refused rather than read as "keep
// nothing": deleting a camera's whole recording takes an erasure, never a
// missing setting.
//
// Retain does not schedule itself. The node calls it for every camera the
// store holds, with the policy's retention for that camera (DESIGN §6:
// 72 h by default), about once a minute and before reporting the store's
// space, so footage leaves within a minute of its time, and a disk that
// filled up gets space back as soon as retention allows. Deleting an epoch
// record is the crypto-shredding of DESIGN §7: the record holds the only
// copies of the epoch key's encrypted shares (custodians hold keys, not
// shares), so once it is gone no copy of the epoch's segments, anywhere,
// can be decrypted by any combination of custodians. (When records are
// replicated to the datacenters, their copies must go the same way.)
func Retain(st *store.Store, camera string, retention time.Duration, now time.Time) (store.Deleted, error) {
	return RetainExcept(st, camera, retention, now, nil)
}

// RetainExcept is Retain that keeps the segments for which held returns
// true, and the epoch records they use (an evidence hold keeps footage
// past retention; see store.DeleteBeforeExcept). Deleted.Held counts them.
// A nil held holds nothing.
func RetainExcept(st *store.Store, camera string, retention time.Duration, now time.Time, held func(store.SegmentMeta) bool) (store.Deleted, error) {
	fail := func(err error) (store.Deleted, error) {
		return store.Deleted{Camera: camera}, fmt.Errorf("media: retain %s: %w", camera, err)
	}
	switch {
	case st == nil:
		return fail(errors.New("no store"))
	case camera == "":
		return fail(errors.New("no camera"))
	case retention <= 0:
		return fail(fmt.Errorf("retention %v: want a positive duration (the policy's default is 72h); refusing to delete everything", retention))
	case now.IsZero():
		return fail(errors.New("zero time for now"))
	}
	d, err := st.DeleteBeforeExcept(camera, now.Add(-retention), held)
	if err != nil {
		return d, fmt.Errorf("media: retain %s for %v: %w", camera, retention, err)
	}
	return d, nil
}
