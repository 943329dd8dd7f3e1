package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

func init() { clients["kafka-go"] = newKafkaGo }

type kafkaGo struct {
	env    Env
	client *kafka.Client
}

func newKafkaGo(env Env) Client {
	return &kafkaGo{env: env, client: &kafka.Client{Addr: kafka.TCP(env.Brokers...), Timeout: 30 * time.Second}}
}

func (k *kafkaGo) Version() string { return moduleVersion("github.com/segmentio/kafka-go") }

func (k *kafkaGo) Close() {}

// firstError is the first error of a response's per-topic map.
func firstError(errs map[string]error) error {
	for topic, err := range errs {
		if err != nil {
			return fmt.Errorf("%s: %w", topic, err)
		}
	}
	return nil
}

func (k *kafkaGo) CreateTopic(ctx context.Context, topic string, partitions int32, rf int16) error {
	r, err := k.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: int(partitions), ReplicationFactor: int(rf)},
	}})
	if err != nil {
		return err
	}
	return firstError(r.Errors)
}

var kafkaGoCodecs = map[string]compress.Compression{
	"none": 0, "gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd,
}

func (k *kafkaGo) Produce(ctx context.Context, topic, codec string, recs []Rec) error {
	w := &kafka.Writer{Addr: kafka.TCP(k.env.Brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, Compression: kafkaGoCodecs[codec], BatchTimeout: 10 * time.Millisecond,
		BatchSize: len(recs)}
	defer w.Close()
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: []byte(r.Key), Value: []byte(r.Value)}
	}
	return w.WriteMessages(ctx, msgs...)
}

func (k *kafkaGo) reader(group, topic string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{Brokers: k.env.Brokers, GroupID: group, Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 200 * time.Millisecond})
}

func kafkaGoRec(m kafka.Message) Rec {
	return Rec{Key: string(m.Key), Value: string(m.Value), Partition: int32(m.Partition), Offset: m.Offset, Millis: m.Time.UnixMilli()}
}

func (k *kafkaGo) Consume(ctx context.Context, group, topic string, n int, commit bool) ([]Rec, error) {
	r := k.reader(group, topic)
	defer r.Close()
	var got []Rec
	var msgs []kafka.Message
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return got, fmt.Errorf("%d of %d records: %w", len(got), n, err)
		}
		got = append(got, kafkaGoRec(m))
		msgs = append(msgs, m)
	}
	if commit {
		if err := r.CommitMessages(ctx, msgs...); err != nil {
			return got, fmt.Errorf("commit: %w", err)
		}
	}
	return got, nil
}

// TwoMembers: kafka-go's Reader does not say what it was assigned, so the group's
// description tells when each member owns a partition.
func (k *kafkaGo) TwoMembers(ctx context.Context, group, topic string, produce func() error, want int) ([]Rec, []Rec, error) {
	p := newPair(ctx, want)
	for i := range 2 {
		r := k.reader(group, topic)
		defer r.Close()
		p.run(i, func() {
			for {
				m, err := r.FetchMessage(p.ctx)
				if err != nil {
					p.failed(i, err)
					return
				}
				p.received(i, kafkaGoRec(m))
			}
		})
	}
	return p.finish(func() (bool, error) {
		r, err := k.client.DescribeGroups(p.ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(r.Groups) != 1 || r.Groups[0].GroupState != "Stable" {
			return false, err
		}
		owning := 0
		for _, m := range r.Groups[0].Members {
			for _, t := range m.MemberAssignments.Topics {
				if t.Topic == topic && len(t.Partitions) > 0 {
					owning++
				}
			}
		}
		return owning == 2, nil
	}, produce)
}

// leader dials the partition's leader, which answers ListOffsets.
func (k *kafkaGo) leader(ctx context.Context, topic string, partition int32) (*kafka.Conn, error) {
	r, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			if t.Name == topic && p.ID == int(partition) {
				addr := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
				return kafka.DialLeader(ctx, "tcp", addr, topic, int(partition))
			}
		}
	}
	return nil, fmt.Errorf("no leader for %s/%d", topic, partition)
}

func (k *kafkaGo) OffsetAfter(ctx context.Context, topic string, partition int32, millis int64) (int64, error) {
	conn, err := k.leader(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadOffset(time.UnixMilli(millis))
}

func (k *kafkaGo) StartOffset(ctx context.Context, topic string, partition int32) (int64, error) {
	conn, err := k.leader(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadFirstOffset()
}

func (k *kafkaGo) ListGroups(ctx context.Context) ([]string, error) {
	r, err := k.client.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, g := range r.Groups {
		names = append(names, g.GroupID)
	}
	return names, r.Error
}

func (k *kafkaGo) GroupState(ctx context.Context, group string) (string, error) {
	r, err := k.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return "", err
	}
	if len(r.Groups) != 1 {
		return "", fmt.Errorf("%d descriptions for one group", len(r.Groups))
	}
	return r.Groups[0].GroupState, r.Groups[0].Error
}

func (k *kafkaGo) TopicConfig(ctx context.Context, topic, name string) (string, error) {
	r, err := k.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic},
	}})
	if err != nil {
		return "", err
	}
	for _, res := range r.Resources {
		if res.Error != nil {
			return "", res.Error
		}
		for _, e := range res.ConfigEntries {
			if e.ConfigName == name {
				return e.ConfigValue, nil
			}
		}
	}
	return "", fmt.Errorf("%s has no config %s", topic, name)
}

func (k *kafkaGo) AddPartitions(ctx context.Context, topic string, total int32) error {
	r, err := k.client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{
		{Name: topic, Count: total},
	}})
	if err != nil {
		return err
	}
	return firstError(r.Errors)
}

func (k *kafkaGo) Partitions(ctx context.Context, topic string) (int32, error) {
	r, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range r.Topics {
		if t.Name == topic {
			return int32(len(t.Partitions)), t.Error
		}
	}
	return 0, fmt.Errorf("%s is not in metadata", topic)
}

func (k *kafkaGo) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) error {
	return notOffered("kafka-go has no DeleteRecords")
}

func (k *kafkaGo) DeleteTopic(ctx context.Context, topic string) error {
	r, err := k.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return firstError(r.Errors)
}

func (k *kafkaGo) Topics(ctx context.Context) ([]string, error) {
	r, err := k.client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range r.Topics {
		names = append(names, t.Name)
	}
	return names, nil
}
