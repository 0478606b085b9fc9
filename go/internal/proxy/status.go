package proxy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/keystone-agent/keystone/internal/atomicfile"
	"github.com/keystone-agent/keystone/internal/statedir"
)

// Status is state/egress.json: the hosts the proxy refused lately, for
// `status`. The daemon rewrites it at most once a second.
type Status struct {
	Refused []Refusal `json:"refused"` // most recent first
}

// Refusal is one refused destination.
type Refusal struct {
	Target string    `json:"target"` // host:port, normalized (never raw guest bytes)
	Reason string    `json:"reason"`
	Count  int       `json:"count"`
	Last   time.Time `json:"last"`
}

// MaxRefused bounds the list: a guest trying thousands of hosts keeps the
// file (and the daemon's memory) small.
const MaxRefused = 20

// ReadStatus reads state/egress.json; none means nothing was refused.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	err := atomicfile.ReadJSON(filepath.Join(stateDir, statedir.EgressStatus), "egress status", &st)
	return st, err
}

// recorder keeps the refusals in memory and writes them out; it logs the
// first refusal of a target per minute, so a guest cannot flood the log.
type recorder struct {
	path    string
	logf    func(string, ...any)
	now     func() time.Time
	mu      sync.Mutex
	st      Status
	dirty   bool
	logged  map[string]time.Time
	dropped int // refusals not logged since the last line
}

func newRecorder(stateDir string, logf func(string, ...any)) *recorder {
	return &recorder{path: filepath.Join(stateDir, statedir.EgressStatus), logf: logf, now: time.Now, logged: map[string]time.Time{}}
}

func (r *recorder) refused(target, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	i := 0
	for i < len(r.st.Refused) && r.st.Refused[i].Target != target {
		i++
	}
	if i == len(r.st.Refused) {
		r.st.Refused = append(r.st.Refused, Refusal{Target: target})
	}
	r.st.Refused[i].Reason = reason
	r.st.Refused[i].Count++
	r.st.Refused[i].Last = now
	sort.SliceStable(r.st.Refused, func(a, b int) bool { return r.st.Refused[a].Last.After(r.st.Refused[b].Last) })
	if len(r.st.Refused) > MaxRefused {
		r.st.Refused = r.st.Refused[:MaxRefused]
	}
	r.dirty = true
	if t, ok := r.logged[target]; ok && now.Sub(t) < time.Minute {
		r.dropped++
		return
	}
	if len(r.logged) > 4*MaxRefused {
		r.logged = map[string]time.Time{}
	}
	r.logged[target] = now
	more := ""
	if r.dropped > 0 {
		more = fmt.Sprintf(" (and %d more refusals not logged)", r.dropped)
		r.dropped = 0
	}
	r.logf("egress: refused %s: %s%s", target, reason, more)
}

// flush writes the file when something changed.
func (r *recorder) flush() error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	b, err := json.MarshalIndent(r.st, "", "  ")
	r.dirty = false
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.Write(r.path, append(b, '\n'), 0o600)
}
