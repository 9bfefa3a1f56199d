"""``zoo eval --ray`` and ``zoo bench --all --ray``: the same work spread over a Ray cluster's CPUs and machines.
``runtime`` joins or starts Ray and plans workers, ``delivery`` brings a node the verified graph, ``eval``
shards an evaluation over workers, ``bench`` runs one bench task per node at a time; Ray is imported only when
one of them runs."""
