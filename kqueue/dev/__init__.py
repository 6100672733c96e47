"""A real local Apache Kafka (KRaft) built from Apache Kafka's own jars, for laptops and tests."""
