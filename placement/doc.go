// Package placement decides which edges hold pushed replicas of which
// content: a pure optimiser (no network, no clock, no globals) from a
// topology, a demand and a catalog to a Plan the origin applies.
//
// Key invariant: a Plan maps every key to at most one replica set, by one
// rule (ReplicasFor: the object's own entry, else its class by longest key
// prefix), and the optimiser places each object under exactly that rule;
// so what the optimiser evaluated is what the origin pushes. Every set it
// returns without error meets its replication factor, the fault-domain
// spread and every edge's capacity; a best-effort plan that does not says
// so in Plan.Violations.
//
// # Model
//
// Latency between a demand point and an edge comes from internal/geo: the
// great-circle estimate, corrected by measured RTTs between regions where
// the topology has them. The objective is the request-weighted mean RTT
// from each demand point to the nearest replica of what it asks for (a
// k-median per replica set), optionally penalising requests over an SLO.
//
// Content is placed per class, and per object for the objects that want
// a set of their own: every object whose catalog entry fixes its
// replicas, more or fewer than its class's, whatever its rate and
// HotObjects (unless its class fixes the same number and it has no
// affinity of its own); and, among the HotObjects most requested, those
// whose rate asks for more replicas than their class has or that have an
// affinity of their own. A class's
// demand is its objects' demand mixed by their rates; an object's demand
// is the demand points' weights times its affinity for their regions. k
// is MinReplicas plus one per doubling of the request rate past
// ReplicaRate (a class uses the mean rate of its objects), at most
// MaxReplicas, unless the catalog fixes it; a k the catalog fixes is
// never changed, and one the topology cannot meet is a violation. A set
// of k edges must span min(k, number of fault domains) fault domains, and
// an edge holds at most its capacity; content bigger than every edge is a
// violation that says by how much.
//
// # Algorithm
//
// Sets are placed in order of request rate per byte. Each is a greedy
// construction followed by best-improvement swap local search (one edge
// out, one in), restarted from other starting points when the problem is
// small; a large demand is searched first on groups of nearby points and
// finished on all of them. When capacity makes content compete, blocked
// sets make others give way (ejection chains), capacity is priced by
// Lagrangian relaxation and, for small problems, other placement orders
// are tried; the best plan found is kept. Passes over the latency matrix
// run on all cores, with results independent of their number; the same
// input and seed give the same plan. Replan starts from the plan in force
// and moves as little as Config.MaxMoves and Config.ChurnPenalty allow.
//
// # Formats
//
// Topology (YAML). Optional regions and rtt_ms carry measured RTTs between
// regions, each measured from an anchor point; edges lists the edges.
// capacity takes SI or IEC units (40TB, 1.5TiB; a decimal point, not a
// comma, which inside { } would end the value) and may be omitted (no
// limit). An edge without fault_domain fails alone: it gets a domain of
// its own, reported as edge/<id>, shared with no other edge. A
// fault_domain spelled like the id of an edge that has none is refused
// as ambiguous: give both edges the fault_domain if they fail together.
//
//	version: 1
//	regions:                       # anchors of measured regions
//	  - {name: us-east, lat: 38.90, lon: -77.04}
//	  - {name: eu-west, lat: 51.51, lon: -0.13}
//	rtt_ms:                        # [from, to, ms]; both directions are averaged
//	  - [us-east, eu-west, 75]
//	edges:
//	  - {id: iad, city: Ashburn, region: us-east, lat: 39.04, lon: -77.49,
//	     fault_domain: grid-us-eastern, capacity: 4TB}
//
// Demand (CSV, UTF-8; a leading byte-order mark is skipped). Lines
// starting with # are comments; a header names the columns, in any
// order; columns other than id, lat, lon, region and weight are ignored.
// weight is any positive measure of requests (population, users); empty
// lat and lon put the point at its region's anchor, which the topology's
// regions must then give.
//
//	id,lat,lon,region,weight,country
//	tokyo,35.69,139.69,jp-east,37.4,JP
//
// Catalog (YAML). A class covers the keys starting with one of its
// prefixes (the longest matching prefix wins; "" matches everything);
// namespace, when given, limits it to one namespace. bytes and rate
// describe content of the class not listed as objects. affinity multiplies
// demand by region ("*" for the others, default 1). replicas fixes k: for
// a class, of its set and of its objects' sets; for an object, of a set
// of its own (see Model), whatever its rate. Objects give size and rate
// (requests per second; rate may be omitted); objects that match no
// class are an error.
//
//	version: 1
//	classes:
//	  - name: vod-br
//	    prefixes: [vod/br/]
//	    affinity: {sa-east: 1, "*": 0.02}
//	    bytes: 2TB
//	    rate: 40
//	objects:
//	  - {key: vod/br/novela-1.mp4, size: 1.2GB, rate: 35}
//	  - {namespace: tenant-1, key: app/v2.bin, size: 80MB, rate: 3, replicas: 4}
//
// Every parse error is an *InputError naming the file, the line and the
// field ("topology.yaml:12: edges[3].capacity: ..."), and so is an error
// Solve finds in an entry read from a file: a demand point whose region
// has no anchor, an affinity that leaves no demand. Violations name the
// catalog entry that fixes k or whose content fits on no edge.
//
// Plan (JSON), what `geocdn placement plan --json` prints and PUT
// /v1/placement carries: see Plan. Version 1; unknown fields are refused.
//
//	{"version": 1, "generated_at": "...", "seed": 1,
//	 "objective": {"name": "...", "mean_rtt_ms": 41.2, ...},
//	 "classes": [{"name": "vod-br", "prefixes": ["vod/br/"], "replicas": ["gru", "gig", "eze"]}],
//	 "objects": [{"namespace": "default", "key": "vod/br/final.mp4", "class": "vod-br",
//	              "replicas": ["gru", "gig", "eze", "mia"]}]}
package placement
