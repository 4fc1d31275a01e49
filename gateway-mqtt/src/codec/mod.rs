//! The MQTT packet codec.
