package strand;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Drives a broker with the Java client on its defaults (idempotent, acks=all): creates a
 * topic, produces keyed records with every codec, lists the producers, reads everything
 * back through assign(), checks each record is where the producer was told it is and that
 * per-key order holds, and looks up offsets by time.
 * Usage: ClientCheck bootstrap topic records. Exits non-zero with a reason on any mismatch.
 */
public final class ClientCheck {
    private static final int PARTITIONS = 3;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int count = Integer.parseInt(args[2]);

        Properties common = new Properties();
        common.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            check(d.partitions().size() == PARTITIONS, "topic has " + d.partitions().size() + " partitions");
            check(d.partitions().get(0).leader().id() == 1, "partition 0 has no leader");
        }

        // An hour ago: inside the default retention (seven days), which deletes older records.
        long baseTime = System.currentTimeMillis() - 3_600_000L;
        Map<String, RecordMetadata> placed = new HashMap<>();
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            Properties p = new Properties();
            p.putAll(common);
            // The client's defaults: acks=all, idempotence on, five requests in flight.
            p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
            try (KafkaProducer<String, String> producer =
                     new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                List<String> values = new ArrayList<>();
                for (int i = 0; i < count; i++) {
                    String value = codec + "|" + String.format("%07d", i);
                    values.add(value);
                    long ts = baseTime + placed.size() + i;
                    sent.add(producer.send(new ProducerRecord<>(topic, null, ts, "key-" + (i % 20), value)));
                }
                for (int i = 0; i < sent.size(); i++) {
                    placed.put(values.get(i), sent.get(i).get());
                }
            }
        }

        try (Admin admin = Admin.create(common)) {
            TopicPartition first = new TopicPartition(topic, 0);
            var producers = admin.describeProducers(List.of(first)).partitionResult(first).get();
            check(!producers.activeProducers().isEmpty(), "DescribeProducers lists no producer");
        }

        Properties c = new Properties();
        c.putAll(common);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Map<String, ConsumerRecord<String, String>> read = new HashMap<>();
        try (KafkaConsumer<String, String> consumer =
                 new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) {
                partitions.add(new TopicPartition(topic, i));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.currentTimeMillis() + 60_000;
            Map<String, Long> lastOffsetOfKey = new HashMap<>();
            while (read.size() < placed.size() && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    read.put(r.value(), r);
                    Long previous = lastOffsetOfKey.put(r.key() + "@" + r.partition(), r.offset());
                    check(previous == null || previous < r.offset(), "key " + r.key() + " went backwards");
                }
            }
            check(read.size() == placed.size(), "read " + read.size() + " of " + placed.size());
            for (Map.Entry<String, RecordMetadata> e : placed.entrySet()) {
                ConsumerRecord<String, String> r = read.get(e.getKey());
                check(r.partition() == e.getValue().partition() && r.offset() == e.getValue().offset(),
                      e.getKey() + " acknowledged at " + e.getValue() + " but read at "
                          + r.partition() + "@" + r.offset());
            }

            // The first record of the run has the smallest timestamp.
            RecordMetadata first = placed.get("none|0000000");
            TopicPartition tp = new TopicPartition(topic, first.partition());
            Map<TopicPartition, OffsetAndTimestamp> byTime =
                consumer.offsetsForTimes(Map.of(tp, baseTime - 1));
            check(byTime.get(tp).offset() == 0, "offsetsForTimes gave " + byTime.get(tp));
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            check(total == placed.size(), "end offsets add up to " + total);
        }
        System.out.println("OK " + placed.size() + " records");
    }

    private static void check(boolean ok, String problem) {
        if (!ok) {
            System.out.println("FAILED: " + problem);
            System.exit(1);
        }
    }
}
