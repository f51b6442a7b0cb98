"""The RabbitMQ bus (pika): the same actors as competing consumers on durable quorum queues.

One concept per module, in the order a message meets them:

* :mod:`workers.rabbitmq.connection`: the broker URL (resolved, redacted), connection
  parameters, and the capped exponential back-off every reconnecting loop uses;
* :mod:`workers.rabbitmq.topology`: the exchanges and quorum queues under one name prefix,
  their dead-letter queues, declared idempotently by everyone who connects;
* :mod:`workers.rabbitmq.publisher`: publishing a message persistently with publisher
  confirms (:class:`~workers.rabbitmq.publisher.RabbitPublisher`, the regiment's relay);
* :mod:`workers.rabbitmq.consumer`: the worker side
  (:class:`~workers.rabbitmq.consumer.RabbitBus`): handler threads, settling on the
  connection thread, dead letters with their reason, retries, graceful stop, reconnect;
* :mod:`workers.rabbitmq.client`: a client's request (publish a ``strike.requested`` and
  wait for its outcome).
"""
