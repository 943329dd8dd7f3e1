// Command compat runs one client's scenario against a Strand cluster and prints one JSON
// line per step: the client, its version, the step, whether it passed and why not.
//
// Every client goes through the same steps (see scenario.go); each file named after a
// client holds that client's way of doing them.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Result is one step's outcome, as docs/compatibility.md reports it.
type Result struct {
	Client  string `json:"client"`
	Version string `json:"version"`
	Step    string `json:"step"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"` // the client offers no way to take the step
	Detail  string `json:"detail,omitempty"`
	Millis  int64  `json:"ms"`
}

func main() {
	client := flag.String("client", "", "the client to run: "+strings.Join(clientNames(), ", "))
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "comma-separated host:port list")
	rf := flag.Int("replication-factor", 1, "replication factor of the topics the scenario creates")
	prefix := flag.String("prefix", fmt.Sprintf("compat-%d", time.Now().UnixNano()%1_000_000),
		"prefix of every topic and group name, so runs do not meet")
	flag.Parse()
	c, ok := clients[*client]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown client %q: choose one of %s\n", *client, strings.Join(clientNames(), ", "))
		os.Exit(2)
	}
	env := Env{
		Brokers: strings.Split(*bootstrap, ","),
		RF:      int16(*rf),
		Prefix:  *prefix + "-" + *client,
	}
	out := json.NewEncoder(os.Stdout)
	failed := false
	Run(c, env, func(r Result) {
		r.Client = *client
		failed = failed || !r.OK
		_ = out.Encode(r)
	})
	if failed {
		os.Exit(1)
	}
}
