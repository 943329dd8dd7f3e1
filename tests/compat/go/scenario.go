package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Rec is a record as produced (key, value) and as consumed (where it was stored).
type Rec struct {
	Key, Value string
	Partition  int32
	Offset     int64
	Millis     int64
}

// Client is what the scenario needs of a Kafka client library.
type Client interface {
	Version() string
	CreateTopic(ctx context.Context, topic string, partitions int32, rf int16) error
	// Produce sends recs with acks=all, compressed with codec (none, gzip, snappy, lz4, zstd).
	Produce(ctx context.Context, topic, codec string, recs []Rec) error
	// Consume reads n records as a member of group, from the earliest offset where the
	// group has committed none, then commits exactly those records if commit is set.
	Consume(ctx context.Context, group, topic string, n int, commit bool) ([]Rec, error)
	// TwoMembers runs two members of group on topic; once each owns a partition it calls
	// produce, then returns what each member received, want records in all.
	TwoMembers(ctx context.Context, group, topic string, produce func() error, want int) ([]Rec, []Rec, error)
	// OffsetAfter is the first offset whose timestamp is at or after millis.
	OffsetAfter(ctx context.Context, topic string, partition int32, millis int64) (int64, error)
	StartOffset(ctx context.Context, topic string, partition int32) (int64, error)
	ListGroups(ctx context.Context) ([]string, error)
	GroupState(ctx context.Context, group string) (string, error)
	TopicConfig(ctx context.Context, topic, name string) (string, error)
	AddPartitions(ctx context.Context, topic string, total int32) error
	Partitions(ctx context.Context, topic string) (int32, error)
	DeleteRecords(ctx context.Context, topic string, partition int32, before int64) error
	DeleteTopic(ctx context.Context, topic string) error
	Topics(ctx context.Context) ([]string, error)
	Close()
}

// Env is where the scenario runs.
type Env struct {
	Brokers []string
	RF      int16
	Prefix  string
}

var clients = map[string]func(Env) Client{}

func clientNames() []string {
	var names []string
	for name := range clients {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

var codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

const perCodec = 40

// Run goes through every step, reporting each to report.
func Run(newClient func(Env) Client, env Env, report func(Result)) {
	c := newClient(env)
	defer c.Close()
	version := c.Version()
	step := func(name string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		r := Result{Version: version, Step: name, OK: err == nil, Millis: time.Since(start).Milliseconds()}
		var skip skipped
		if errors.As(err, &skip) {
			r.OK, r.Skipped = true, true
		}
		if err != nil {
			r.Detail = err.Error()
		}
		report(r)
	}
	topic, pair := env.Prefix+"-main", env.Prefix+"-pair"
	var all []Rec

	step("create topics", func(ctx context.Context) error {
		for _, t := range []string{topic, pair} {
			if err := c.CreateTopic(ctx, t, 3, env.RF); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
		return waitFor(ctx, "both topics in metadata", func() (bool, error) {
			topics, err := c.Topics(ctx)
			return contains(topics, topic) && contains(topics, pair), err
		})
	})
	var sent []Rec
	for _, codec := range codecs {
		recs := make([]Rec, perCodec)
		for i := range recs {
			recs[i] = Rec{Key: fmt.Sprintf("k%d", i%8), Value: fmt.Sprintf("%s-%03d", codec, i)}
		}
		step("keyed produce, "+codec, func(ctx context.Context) error {
			return c.Produce(ctx, topic, codec, recs)
		})
		sent = append(sent, recs...)
		// Each codec's records get later timestamps than the one before.
		time.Sleep(20 * time.Millisecond)
	}
	step("consume in a group", func(ctx context.Context) error {
		got, err := c.Consume(ctx, env.Prefix+"-reader", topic, len(sent), false)
		if err != nil {
			return err
		}
		all = got
		return checkOrder(sent, got)
	})
	step("commit, then resume from the committed offsets", func(ctx context.Context) error {
		group := env.Prefix + "-resumer"
		first, err := c.Consume(ctx, group, topic, len(sent)/3, true)
		if err != nil {
			return fmt.Errorf("first member: %w", err)
		}
		rest, err := c.Consume(ctx, group, topic, len(sent)-len(first), true)
		if err != nil {
			return fmt.Errorf("second member: %w", err)
		}
		seen := map[string]bool{}
		for _, r := range first {
			seen[r.Value] = true
		}
		for _, r := range rest {
			if seen[r.Value] {
				return fmt.Errorf("%s was read again after its offset was committed", r.Value)
			}
		}
		return checkOrder(sent, append(first, rest...))
	})
	step("two members share a group", func(ctx context.Context) error {
		var produced []Rec
		a, b, err := c.TwoMembers(ctx, env.Prefix+"-pair", pair, func() error {
			for i := 0; i < 30; i++ {
				produced = append(produced, Rec{Key: fmt.Sprintf("p%d", i), Value: fmt.Sprintf("pair-%03d", i)})
			}
			return c.Produce(ctx, pair, "none", produced)
		}, 30)
		if err != nil {
			return err
		}
		if len(a) == 0 || len(b) == 0 {
			return fmt.Errorf("one member received nothing: %d and %d records", len(a), len(b))
		}
		return checkOrder(produced, append(a, b...))
	})
	step("list and describe groups", func(ctx context.Context) error {
		groups, err := c.ListGroups(ctx)
		if err != nil {
			return err
		}
		// The group that committed offsets: an empty group without any may be gone.
		if g := env.Prefix + "-resumer"; !contains(groups, g) {
			return fmt.Errorf("ListGroups lacks %s: %v", g, groups)
		}
		state, err := c.GroupState(ctx, env.Prefix+"-resumer")
		if err != nil {
			return err
		}
		if state != "Empty" {
			return fmt.Errorf("a group whose members left is %q, not Empty", state)
		}
		return nil
	})
	step("offset for a timestamp", func(ctx context.Context) error {
		if len(all) == 0 {
			return fmt.Errorf("nothing was consumed to compare with")
		}
		// The first lz4 record of a partition: its timestamp is later than every earlier
		// codec's.
		var probe *Rec
		for i := range all {
			r := &all[i]
			if strings.HasPrefix(r.Value, "lz4-") && (probe == nil || r.Partition == probe.Partition && r.Offset < probe.Offset) {
				probe = r
			}
		}
		want := probe.Offset
		for _, r := range all {
			if r.Partition == probe.Partition && r.Millis >= probe.Millis && r.Offset < want {
				want = r.Offset
			}
		}
		got, err := c.OffsetAfter(ctx, topic, probe.Partition, probe.Millis)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("partition %d, time %d: offset %d, want %d", probe.Partition, probe.Millis, got, want)
		}
		return nil
	})
	step("describe a topic's configs", func(ctx context.Context) error {
		v, err := c.TopicConfig(ctx, topic, "cleanup.policy")
		if err != nil {
			return err
		}
		if v != "delete" {
			return fmt.Errorf("cleanup.policy is %q, want delete", v)
		}
		return nil
	})
	step("add a partition", func(ctx context.Context) error {
		if err := c.AddPartitions(ctx, topic, 4); err != nil {
			return err
		}
		return waitFor(ctx, "4 partitions in metadata", func() (bool, error) {
			n, err := c.Partitions(ctx, topic)
			return n == 4, err
		})
	})
	step("delete records", func(ctx context.Context) error {
		counts := map[int32]int64{}
		for _, r := range all {
			counts[r.Partition]++
		}
		var fullest int32
		for p, n := range counts {
			if n > counts[fullest] {
				fullest = p
			}
		}
		before := counts[fullest] / 2
		if err := c.DeleteRecords(ctx, topic, fullest, before); err != nil {
			return err
		}
		start, err := c.StartOffset(ctx, topic, fullest)
		if err != nil {
			return err
		}
		if start != before {
			return fmt.Errorf("partition %d starts at %d after deleting before %d", fullest, start, before)
		}
		return nil
	})
	step("delete a topic", func(ctx context.Context) error {
		if err := c.DeleteTopic(ctx, pair); err != nil {
			return err
		}
		return waitFor(ctx, "the topic gone from metadata", func() (bool, error) {
			topics, err := c.Topics(ctx)
			return err == nil && !contains(topics, pair), nil
		})
	})
}

// pair is the bookkeeping of a client's TwoMembers: what each member received, their
// errors, and when both stop.
type pair struct {
	ctx  context.Context
	stop context.CancelFunc
	want int
	mu   sync.Mutex
	got  [2][]Rec
	errs [2]error
	wg   sync.WaitGroup
}

func newPair(ctx context.Context, want int) *pair {
	ctx, stop := context.WithCancel(ctx)
	return &pair{ctx: ctx, stop: stop, want: want}
}

// run runs member i's loop in a goroutine.
func (p *pair) run(i int, loop func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		loop()
	}()
}

// received notes a record of member i; both stop once every wanted record came.
func (p *pair) received(i int, r Rec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got[i] = append(p.got[i], r)
	if len(p.got[0])+len(p.got[1]) >= p.want {
		p.stop()
	}
}

// failed notes member i's error, unless it came from stopping; both stop.
func (p *pair) failed(i int, err error) {
	if err == nil || p.ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	p.errs[i] = fmt.Errorf("member %d: %w", i, err)
	p.mu.Unlock()
	p.stop()
}

// finish waits until both members own partitions, produces, waits for the members to stop,
// and returns what each received.
func (p *pair) finish(owning func() (bool, error), produce func() error) ([]Rec, []Rec, error) {
	err := waitFor(p.ctx, "both members to own partitions", owning)
	if err == nil {
		err = produce()
	}
	if err != nil {
		p.stop()
	}
	p.wg.Wait()
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	err = errors.Join(err, p.errs[0], p.errs[1])
	if n := len(p.got[0]) + len(p.got[1]); err == nil && n < p.want {
		err = fmt.Errorf("received %d of %d records", n, p.want)
	}
	return p.got[0], p.got[1], err
}

// checkOrder says whether got holds each sent record once, each key in one partition and in
// the order it was sent.
func checkOrder(sent, got []Rec) error {
	index := map[string]int{}
	for i, r := range sent {
		index[r.Value] = i
	}
	seen := map[string]bool{}
	for _, r := range got {
		if _, ok := index[r.Value]; !ok {
			return fmt.Errorf("unexpected record %q", r.Value)
		}
		if seen[r.Value] {
			return fmt.Errorf("record %q delivered twice", r.Value)
		}
		seen[r.Value] = true
		if sent[index[r.Value]].Key != r.Key {
			return fmt.Errorf("record %q came with key %q", r.Value, r.Key)
		}
	}
	if len(seen) != len(sent) {
		return fmt.Errorf("received %d of %d records", len(seen), len(sent))
	}
	byKey := map[string][]Rec{}
	for _, r := range got {
		byKey[r.Key] = append(byKey[r.Key], r)
	}
	for key, recs := range byKey {
		sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
		for i := 1; i < len(recs); i++ {
			if recs[i].Partition != recs[0].Partition {
				return fmt.Errorf("key %s is in partitions %d and %d", key, recs[0].Partition, recs[i].Partition)
			}
			if index[recs[i].Value] < index[recs[i-1].Value] {
				return fmt.Errorf("key %s: %s stored after %s", key, recs[i].Value, recs[i-1].Value)
			}
		}
	}
	return nil
}

// skipped is a step the client library offers no way to take.
type skipped string

func (s skipped) Error() string { return string(s) }

func notOffered(why string) error { return skipped(why) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w", what, last)
			}
			return fmt.Errorf("gave up waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
