package strand;

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java producer with nothing but its defaults (idempotent, acks=all, five requests in
 * flight, retries until delivery.timeout.ms), sending numbered values per key ("k3:000000042")
 * until its standard input closes. Prints "ACK value partition offset" for each acknowledged
 * record and "ERR value reason" for each failed one, then "DONE sent".
 * Usage: IdempotentSender bootstrap topic keys
 */
public final class IdempotentSender {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false);
        String topic = args[1];
        int keys = Integer.parseInt(args[2]);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);

        AtomicBoolean stopping = new AtomicBoolean();
        Thread stdinWatch = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // Anything written, or the pipe closing, ends the run.
                    break;
                }
            } catch (IOException ignored) {
                // A broken pipe ends the run too.
            }
            stopping.set(true);
        });
        stdinWatch.setDaemon(true);
        stdinWatch.start();

        AtomicLong failures = new AtomicLong();
        long sent = 0;
        try (KafkaProducer<String, String> producer =
                 new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            while (!stopping.get()) {
                String key = "k" + (sent % keys);
                String value = String.format("%s:%09d", key, sent);
                producer.send(new ProducerRecord<>(topic, key, value), (md, err) -> {
                    synchronized (out) {
                        if (err == null) {
                            out.println("ACK " + value + " " + md.partition() + " " + md.offset());
                        } else {
                            failures.incrementAndGet();
                            out.println("ERR " + value + " " + err);
                        }
                    }
                });
                sent++;
                if (sent % 200 == 0) {
                    // Stay well under what three nodes on one machine can replicate, so
                    // the run is about faults rather than a full buffer.
                    Thread.sleep(5);
                }
            }
            producer.flush();
        }
        synchronized (out) {
            out.println("DONE " + sent + " failed " + failures.get());
            out.flush();
        }
    }
}
