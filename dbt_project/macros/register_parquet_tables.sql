{#- Make landed data that was exported to Parquet (orchestration/spark.py) readable as Spark tables, so the
    dbt sources (raw.*, identity.*, ml.*) resolve on Spark exactly as they do in DuckDB.
    `tables` is a list of {schema, name, location}; Spark SQL runs one statement per call, hence a loop. -#}
{% macro register_parquet_tables(tables) %}
    {%- for schema in tables | map(attribute='schema') | unique %}
        {% do run_query('create database if not exists ' ~ schema) %}
    {%- endfor %}
    {%- for table in tables %}
        {%- if "'" in table.location %}
            {{ exceptions.raise_compiler_error("Parquet location must not contain a quote: " ~ table.location) }}
        {%- endif %}
        {% do run_query('drop table if exists ' ~ table.schema ~ '.' ~ table.name) %}
        {% do run_query(
            'create table ' ~ table.schema ~ '.' ~ table.name ~ " using parquet location '" ~ table.location ~ "'"
        ) %}
        {% do log('registered ' ~ table.schema ~ '.' ~ table.name ~ ' at ' ~ table.location, info=True) %}
    {%- endfor %}
{% endmacro %}
