//! Blackboard and MessageBus for governance pipelines on Redis / DragonflyDB
