package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

func init() { clients["sarama"] = newSarama }

// sarama runs at the client's default protocol level (Config.Version), as most users do.
type saramaClient struct {
	env    Env
	client sarama.Client
	admin  sarama.ClusterAdmin
}

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "strand-compat"
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Return.Errors = true
	return cfg
}

func newSarama(env Env) Client {
	client, err := sarama.NewClient(env.Brokers, saramaConfig())
	if err != nil {
		panic(err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		panic(err)
	}
	return &saramaClient{env: env, client: client, admin: admin}
}

func (s *saramaClient) Version() string {
	return moduleVersion("github.com/IBM/sarama") + " (protocol " + saramaConfig().Version.String() + ")"
}

func (s *saramaClient) Close() { _ = s.admin.Close() }

func (s *saramaClient) CreateTopic(ctx context.Context, topic string, partitions int32, rf int16) error {
	return s.admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: rf}, false)
}

var saramaCodecs = map[string]sarama.CompressionCodec{
	"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
	"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
}

func (s *saramaClient) Produce(ctx context.Context, topic, codec string, recs []Rec) error {
	cfg := saramaConfig()
	cfg.Producer.Compression = saramaCodecs[codec]
	p, err := sarama.NewSyncProducer(s.env.Brokers, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key), Value: sarama.StringEncoder(r.Value)}
	}
	return p.SendMessages(msgs)
}

// handler is a consumer group member's callbacks: each claimed message goes to take, which
// says whether to mark it for the next commit.
type handler struct {
	setup   func(sarama.ConsumerGroupSession)
	cleanup func(sarama.ConsumerGroupSession)
	take    func(sarama.ConsumerGroupSession, *sarama.ConsumerMessage)
}

func (h handler) Setup(s sarama.ConsumerGroupSession) error {
	if h.setup != nil {
		h.setup(s)
	}
	return nil
}

func (h handler) Cleanup(s sarama.ConsumerGroupSession) error {
	if h.cleanup != nil {
		h.cleanup(s)
	}
	return nil
}

func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.take(s, m)
		case <-s.Context().Done():
			return nil
		}
	}
}

// consume runs a member of group until ctx ends, and returns the first error it reported.
func (s *saramaClient) consume(ctx context.Context, group, topic string, h handler) error {
	g, err := sarama.NewConsumerGroup(s.env.Brokers, group, saramaConfig())
	if err != nil {
		return err
	}
	reported := make(chan error, 1)
	go func() {
		for e := range g.Errors() {
			select {
			case reported <- e:
			default:
			}
		}
	}()
	for ctx.Err() == nil && err == nil {
		if err = g.Consume(ctx, []string{topic}, h); errors.Is(err, context.Canceled) {
			err = nil
		}
	}
	if closeErr := g.Close(); err == nil {
		err = closeErr
	}
	select {
	case e := <-reported:
		return errors.Join(err, e)
	default:
		return err
	}
}

func saramaRec(m *sarama.ConsumerMessage) Rec {
	return Rec{Key: string(m.Key), Value: string(m.Value), Partition: m.Partition, Offset: m.Offset, Millis: m.Timestamp.UnixMilli()}
}

func (s *saramaClient) Consume(ctx context.Context, group, topic string, n int, commit bool) ([]Rec, error) {
	var mu sync.Mutex
	var got []Rec
	done, stop := context.WithCancel(ctx)
	defer stop()
	err := s.consume(done, group, topic, handler{take: func(sess sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
		mu.Lock()
		defer mu.Unlock()
		if len(got) >= n {
			return
		}
		got = append(got, saramaRec(m))
		sess.MarkMessage(m, "")
		if len(got) == n {
			if commit {
				sess.Commit()
			}
			stop()
		}
	}})
	mu.Lock()
	defer mu.Unlock()
	if err == nil && len(got) < n {
		err = fmt.Errorf("%d of %d records: %w", len(got), n, ctx.Err())
	}
	return got, err
}

func (s *saramaClient) TwoMembers(ctx context.Context, group, topic string, produce func() error, want int) ([]Rec, []Rec, error) {
	p := newPair(ctx, want)
	var mu sync.Mutex
	claims := [2]int{}
	for i := range 2 {
		p.run(i, func() {
			p.failed(i, s.consume(p.ctx, group, topic, handler{
				setup: func(sess sarama.ConsumerGroupSession) {
					mu.Lock()
					claims[i] = len(sess.Claims()[topic])
					mu.Unlock()
				},
				cleanup: func(sarama.ConsumerGroupSession) {
					mu.Lock()
					claims[i] = 0
					mu.Unlock()
				},
				take: func(_ sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
					p.received(i, saramaRec(m))
				},
			}))
		})
	}
	return p.finish(func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return claims[0] > 0 && claims[1] > 0, nil
	}, produce)
}

func (s *saramaClient) OffsetAfter(ctx context.Context, topic string, partition int32, millis int64) (int64, error) {
	return s.client.GetOffset(topic, partition, millis)
}

func (s *saramaClient) StartOffset(ctx context.Context, topic string, partition int32) (int64, error) {
	return s.client.GetOffset(topic, partition, sarama.OffsetOldest)
}

func (s *saramaClient) ListGroups(ctx context.Context) ([]string, error) {
	groups, err := s.admin.ListConsumerGroups()
	var names []string
	for g := range groups {
		names = append(names, g)
	}
	return names, err
}

func (s *saramaClient) GroupState(ctx context.Context, group string) (string, error) {
	described, err := s.admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return "", err
	}
	if len(described) != 1 {
		return "", fmt.Errorf("%d descriptions for one group", len(described))
	}
	if described[0].Err != sarama.ErrNoError {
		return "", described[0].Err
	}
	return described[0].State, nil
}

func (s *saramaClient) TopicConfig(ctx context.Context, topic, name string) (string, error) {
	entries, err := s.admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name == name {
			return e.Value, nil
		}
	}
	return "", fmt.Errorf("%s has no config %s", topic, name)
}

func (s *saramaClient) AddPartitions(ctx context.Context, topic string, total int32) error {
	return s.admin.CreatePartitions(topic, total, nil, false)
}

func (s *saramaClient) Partitions(ctx context.Context, topic string) (int32, error) {
	described, err := s.admin.DescribeTopics([]string{topic})
	if err != nil {
		return 0, err
	}
	if len(described) != 1 {
		return 0, fmt.Errorf("%d descriptions for one topic", len(described))
	}
	if described[0].Err != sarama.ErrNoError {
		return 0, described[0].Err
	}
	return int32(len(described[0].Partitions)), nil
}

func (s *saramaClient) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) error {
	return s.admin.DeleteRecords(topic, map[int32]int64{partition: before})
}

func (s *saramaClient) DeleteTopic(ctx context.Context, topic string) error {
	return s.admin.DeleteTopic(topic)
}

func (s *saramaClient) Topics(ctx context.Context) ([]string, error) {
	topics, err := s.admin.ListTopics()
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	return names, err
}
