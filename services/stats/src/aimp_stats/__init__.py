"""aimp-stats: request events from Kafka into SQL, and usage answers over them."""
