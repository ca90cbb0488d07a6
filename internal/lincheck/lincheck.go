// Package lincheck records histories of reads and writes of per-key
// registers, as clients of a cluster observe them, and checks them for
// linearizability with porcupine. The in-process histories over the
// simulated WAN (internal/cluster) and the real-process histories on the
// real clock (cmd/geocdn) share it, so both are held to one model.
//
// Key invariant: a write whose outcome the client could not learn (a
// timeout, a lost connection) is recorded as returning after every other
// operation, so it may take effect at any moment after its call, or never;
// nothing the client did not observe is ever asserted.
package lincheck

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Input is one operation on a single key's register.
type Input struct {
	Key   string
	Write bool
	// Value is the written value; unused for reads.
	Value string
}

// Absent is what a read of a key that does not exist observes (a 404),
// and every register's initial state.
const Absent = ""

// Model is a register per key. Partitioning by key lets porcupine check
// each key alone. A function, not a variable, so the package holds no
// shared state.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range h {
				k := op.Input.(Input).Key
				if _, ok := by[k]; !ok {
					keys = append(keys, k)
				}
				by[k] = append(by[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return Absent },
		Step: func(state, input, output any) (bool, any) {
			in := input.(Input)
			if in.Write {
				return true, in.Value
			}
			return output.(string) == state.(string), state
		},
		DescribeOperation: func(input, output any) string {
			in, ok := input.(Input)
			if !ok {
				return fmt.Sprint(input) // an annotation of porcupine's own
			}
			if in.Write {
				return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
			}
			out, _ := output.(string)
			if out == Absent {
				return fmt.Sprintf("get(%s) -> 404", in.Key)
			}
			return fmt.Sprintf("get(%s) -> %q", in.Key, out)
		},
		DescribeState: func(state any) string {
			if s := state.(string); s != Absent {
				return fmt.Sprintf("%q", s)
			}
			return "absent"
		},
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return info.(string)
		},
	}
}

// Recorder collects operations from many goroutines. Times are
// nanoseconds since Start on the clock time.Now reads: the real clock, or
// a synctest bubble's, where call and return times order operations
// exactly as the cluster could observe them.
type Recorder struct {
	Start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// unknown are the indexes of writes whose outcome is unknown.
	unknown []int
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{Start: time.Now()} }

// Now is the time to record as an operation's call or return.
func (r *Recorder) Now() int64 { return time.Since(r.Start).Nanoseconds() }

// Write records a write of value to key by client, called and answered at
// the given times. ok false means its outcome is unknown: ret is then
// ignored.
func (r *Recorder) Write(client int, key, value string, call, ret int64, ok bool, meta string) {
	op := porcupine.Operation{ClientId: client, Input: Input{Key: key, Write: true, Value: value}, Output: "",
		Call: call, Return: ret, Metadata: meta}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		op.Return = math.MaxInt64
		r.unknown = append(r.unknown, len(r.ops))
	}
	r.ops = append(r.ops, op)
}

// Read records that client read value (Absent for a 404) from key.
func (r *Recorder) Read(client int, key, value string, call, ret int64, meta string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: Input{Key: key}, Output: value,
		Call: call, Return: ret, Metadata: meta})
}

// History returns the operations, with every write of unknown outcome
// given a return after every other operation.
func (r *Recorder) History() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last int64
	for _, op := range r.ops {
		if op.Return != math.MaxInt64 {
			last = max(last, op.Return)
		}
	}
	ops := append([]porcupine.Operation(nil), r.ops...)
	for _, i := range r.unknown {
		ops[i].Return = last + 1
	}
	return ops
}

// Check checks h against Model. A history that is not linearizable is
// written, as porcupine's visualisation and as text one operation a line,
// into dir under name (.html and .txt), and the error names both files.
// A check that runs out of timeout reports porcupine.Unknown and no error.
func Check(h []porcupine.Operation, timeout time.Duration, dir, name string) (porcupine.CheckResult, error) {
	res, info := porcupine.CheckOperationsVerbose(Model(), h, timeout)
	if res != porcupine.Illegal {
		return res, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("history of %d operations is not linearizable (and %v)", len(h), err)
	}
	html := filepath.Join(dir, name+".html")
	txt := filepath.Join(dir, name+".txt")
	if err := porcupine.VisualizePath(Model(), info, html); err != nil {
		return res, fmt.Errorf("history of %d operations is not linearizable (and visualising it: %v)", len(h), err)
	}
	if err := os.WriteFile(txt, Dump(h), 0o644); err != nil {
		return res, fmt.Errorf("history of %d operations is not linearizable (and writing it: %v)", len(h), err)
	}
	return res, fmt.Errorf("history of %d operations is not linearizable; see %s and %s", len(h), html, txt)
}

// HistoryDir is where Check should write failing histories: under
// GEOCDN_HISTORY_DIR when set, so CI can keep them, else fallback (a
// test's artifact directory).
func HistoryDir(fallback string) string {
	if dir := os.Getenv("GEOCDN_HISTORY_DIR"); dir != "" {
		return dir
	}
	return fallback
}

// Dump lists h one operation a line, by key and call time, for reading a
// failure without a browser.
func Dump(h []porcupine.Operation) []byte {
	ops := append([]porcupine.Operation(nil), h...)
	sort.SliceStable(ops, func(i, j int) bool {
		ki, kj := ops[i].Input.(Input).Key, ops[j].Input.(Input).Key
		if ki != kj {
			return ki < kj
		}
		return ops[i].Call < ops[j].Call
	})
	var b bytes.Buffer
	m := Model()
	for _, op := range ops {
		ret := "        unknown"
		if op.Return != math.MaxInt64 {
			ret = fmt.Sprintf("%13.3fms", float64(op.Return)/1e6)
		}
		fmt.Fprintf(&b, "%13.3fms %s client %d %-40s %v\n", float64(op.Call)/1e6, ret,
			op.ClientId, m.DescribeOperation(op.Input, op.Output), op.Metadata)
	}
	return b.Bytes()
}
