package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() { clients["franz-go"] = newFranz }

type franz struct {
	env   Env
	cl    *kgo.Client
	admin *kadm.Client
}

func newFranz(env Env) Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
	if err != nil {
		panic(err)
	}
	return &franz{env: env, cl: cl, admin: kadm.NewClient(cl)}
}

func (f *franz) Version() string { return moduleVersion("github.com/twmb/franz-go") }

func (f *franz) Close() { f.cl.Close() }

func (f *franz) CreateTopic(ctx context.Context, topic string, partitions int32, rf int16) error {
	r, err := f.admin.CreateTopic(ctx, partitions, rf, nil, topic)
	if err != nil {
		return err
	}
	return r.Err
}

var franzCodecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

func (f *franz) Produce(ctx context.Context, topic, codec string, recs []Rec) error {
	p, err := kgo.NewClient(kgo.SeedBrokers(f.env.Brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(franzCodecs[codec]), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer p.Close()
	krecs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krecs[i] = &kgo.Record{Key: []byte(r.Key), Value: []byte(r.Value)}
	}
	return p.ProduceSync(ctx, krecs...).FirstErr()
}

func (f *franz) member(group, topic string, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(f.env.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
	}, opts...)...)
}

func received(r *kgo.Record) Rec {
	return Rec{Key: string(r.Key), Value: string(r.Value), Partition: r.Partition, Offset: r.Offset, Millis: r.Timestamp.UnixMilli()}
}

func (f *franz) Consume(ctx context.Context, group, topic string, n int, commit bool) ([]Rec, error) {
	c, err := f.member(group, topic)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var got []Rec
	var processed []*kgo.Record
	for len(got) < n {
		fetches := c.PollRecords(ctx, n-len(got))
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("%d of %d records: %w", len(got), n, err)
		}
		for _, e := range fetches.Errors() {
			return got, fmt.Errorf("fetching %s/%d: %w", e.Topic, e.Partition, e.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got = append(got, received(r))
			processed = append(processed, r)
		})
	}
	if commit {
		if err := c.CommitRecords(ctx, processed...); err != nil {
			return got, fmt.Errorf("commit: %w", err)
		}
	}
	return got, nil
}

func (f *franz) TwoMembers(ctx context.Context, group, topic string, produce func() error, want int) ([]Rec, []Rec, error) {
	p := newPair(ctx, want)
	var mu sync.Mutex
	owned := [2]map[int32]bool{{}, {}}
	for i := range 2 {
		track := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
			return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, partition := range ps[topic] {
					if add {
						owned[i][partition] = true
					} else {
						delete(owned[i], partition)
					}
				}
			}
		}
		c, err := f.member(group, topic, kgo.OnPartitionsAssigned(track(true)),
			kgo.OnPartitionsRevoked(track(false)), kgo.OnPartitionsLost(track(false)))
		if err != nil {
			p.stop()
			return nil, nil, err
		}
		defer c.Close()
		p.run(i, func() {
			for p.ctx.Err() == nil {
				fetches := c.PollFetches(p.ctx)
				for _, e := range fetches.Errors() {
					p.failed(i, fmt.Errorf("fetching %s/%d: %w", e.Topic, e.Partition, e.Err))
				}
				fetches.EachRecord(func(r *kgo.Record) { p.received(i, received(r)) })
			}
		})
	}
	return p.finish(func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(owned[0]) > 0 && len(owned[1]) > 0, nil
	}, produce)
}

func (f *franz) OffsetAfter(ctx context.Context, topic string, partition int32, millis int64) (int64, error) {
	listed, err := f.admin.ListOffsetsAfterMilli(ctx, millis, topic)
	return lookup(listed, err, topic, partition)
}

func (f *franz) StartOffset(ctx context.Context, topic string, partition int32) (int64, error) {
	listed, err := f.admin.ListStartOffsets(ctx, topic)
	return lookup(listed, err, topic, partition)
}

func lookup(listed kadm.ListedOffsets, err error, topic string, partition int32) (int64, error) {
	if err != nil {
		return 0, err
	}
	o, ok := listed.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("no offset listed for %s/%d", topic, partition)
	}
	return o.Offset, o.Err
}

func (f *franz) ListGroups(ctx context.Context) ([]string, error) {
	groups, err := f.admin.ListGroups(ctx)
	return groups.Groups(), err
}

func (f *franz) GroupState(ctx context.Context, group string) (string, error) {
	described, err := f.admin.DescribeGroups(ctx, group)
	if err != nil {
		return "", err
	}
	d, err := described.On(group, nil)
	if err != nil {
		return "", err
	}
	return d.State, d.Err
}

func (f *franz) TopicConfig(ctx context.Context, topic, name string) (string, error) {
	configs, err := f.admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return "", err
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		return "", err
	}
	if rc.Err != nil {
		return "", rc.Err
	}
	for _, c := range rc.Configs {
		if c.Key == name && c.Value != nil {
			return *c.Value, nil
		}
	}
	return "", fmt.Errorf("%s has no config %s", topic, name)
}

func (f *franz) AddPartitions(ctx context.Context, topic string, total int32) error {
	n, err := f.Partitions(ctx, topic)
	if err != nil {
		return err
	}
	r, err := f.admin.CreatePartitions(ctx, int(total-n), topic)
	if err != nil {
		return err
	}
	return r.Error()
}

func (f *franz) Partitions(ctx context.Context, topic string) (int32, error) {
	details, err := f.admin.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	d, ok := details[topic]
	if !ok {
		return 0, fmt.Errorf("%s is not in metadata", topic)
	}
	return int32(len(d.Partitions)), d.Err
}

func (f *franz) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) error {
	r, err := f.admin.DeleteRecords(ctx, kadm.Offsets{topic: {partition: {Topic: topic, Partition: partition, At: before}}})
	if err != nil {
		return err
	}
	d, ok := r.Lookup(topic, partition)
	if !ok {
		return fmt.Errorf("no answer for %s/%d", topic, partition)
	}
	return d.Err
}

func (f *franz) DeleteTopic(ctx context.Context, topic string) error {
	r, err := f.admin.DeleteTopics(ctx, topic)
	if err != nil {
		return err
	}
	return r.Error()
}

func (f *franz) Topics(ctx context.Context) ([]string, error) {
	details, err := f.admin.ListTopics(ctx)
	return details.Names(), err
}

// moduleVersion is the version of a module this binary was built with.
func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "unknown"
}
