"""What every engine family is built on: the errors the engine raises (`errors`), closed
named registries (`registry`) and typed reads of values from user configs (`readers`)."""
